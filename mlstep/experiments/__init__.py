"""Every chapter's experiments and sweeps: one controlled comparison per function, one seed per
call, built from the package's pieces; :mod:`~mlstep.experiments.results` summarises seeds and
writes the JSON files the chapters read. ``python -m mlstep.experiments NAME`` reruns a sweep."""
