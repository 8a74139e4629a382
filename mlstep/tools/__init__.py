"""What every stage leans on, below the models: checks of user input (:mod:`~mlstep.tools.checks`),
devices, precision, seeds, threads, ``torchrun`` and safe file writes (:mod:`~mlstep.tools.runtime`),
atomic checkpoints with exact resume (:mod:`~mlstep.tools.checkpoint`), and plots
(:mod:`~mlstep.tools.plot`). Nothing here imports a model."""
