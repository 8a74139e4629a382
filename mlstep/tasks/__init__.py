"""The tasks the models are trained on, and the course's models.

- :mod:`~mlstep.tasks.masked_lm`: sentence pairs, dynamic masking, the MLM (+ NSP/SOP) step and
  its evaluation, the course's BERT recipe;
- :mod:`~mlstep.tasks.causal_lm`: packed blocks, n-gram baselines, perplexity, sampling, the
  conclusion-writing task, the course's GPT recipe;
- :mod:`~mlstep.tasks.labeled`: labeled data to tensors, ``fit``, ``predict`` and scores;
- :mod:`~mlstep.tasks.realtext`: real English (chapter 10);
- :mod:`~mlstep.tasks.store`: ``save_model`` / ``load_model`` for any mlstep model;
- :mod:`~mlstep.tasks.course`: the course models, loaded (or rebuilt) by name:
  ``python -m mlstep.tasks {bert,gpt,realtext}``.
"""
