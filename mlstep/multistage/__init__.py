"""Multi-stage training (chapter 09), the building blocks: heads and losses on several layers
(:mod:`~mlstep.multistage.layerwise`), a curriculum of data stages
(:mod:`~mlstep.multistage.curriculum`), one encoder with a head per task
(:mod:`~mlstep.multistage.multitask`), a new domain's words and continued pretraining
(:mod:`~mlstep.multistage.adapt`), pruning (:mod:`~mlstep.multistage.prune`) and stages chained
(:mod:`~mlstep.multistage.pipeline`). The experiments that measure them are in
:mod:`mlstep.experiments`."""
