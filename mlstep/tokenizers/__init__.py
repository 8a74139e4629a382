"""Tokenizers trained from scratch: the shared base (:mod:`~mlstep.tokenizers.base`: vocabulary,
pairs, padding, batches, JSON save/load), WordPiece for BERT (:mod:`~mlstep.tokenizers.wordpiece`),
byte-level BPE for GPT-2 (:mod:`~mlstep.tokenizers.bpe`), and the merge learner both share
(:mod:`~mlstep.tokenizers.merges`)."""
