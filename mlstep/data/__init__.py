"""Data for the chapters: a seeded offline corpus (``load_task``) and real-dataset loaders.

The offline corpus is generated, not downloaded: ``generate_corpus(CorpusConfig())`` makes the
same records on every machine in about two seconds, and ``load_task(task, split)`` caches them as
JSON Lines under ``data/generated/`` and returns a ``datasets.Dataset``. ``data/README.md`` is
its data card. Regenerate and print statistics with ``python -m mlstep.data``.

The real benchmarks (SST-2, AG News, IMDb, MNLI, CoNLL-2003, WikiText-2) load through
``datasets`` from the Hugging Face Hub, or from local copies with ``path=``. Universal
Dependencies treebanks (CoNLL-U) load with ``load_conllu``; ``load_ud_english_ewt()`` reads the
slice of the English Web Treebank committed in ``data/realtext/`` (chapter 10).
"""

from mlstep.data.conllu import UPOS_TAGS, load_conllu, load_ud_english_ewt, read_conllu
from mlstep.data.corpus import (
    NLI_LABELS,
    SENTIMENT_LABELS,
    TAGS,
    TASK_SPLITS,
    TOPICS,
    CorpusConfig,
    generate_corpus,
)
from mlstep.data.grammar import is_corpus_sentence
from mlstep.data.loaders import (
    load_ag_news,
    load_conll2003,
    load_imdb,
    load_mnli,
    load_sst2,
    load_wikitext2,
)
from mlstep.data.store import (
    default_data_dir,
    english_sample,
    load_task,
    realtext_dir,
    write_corpus,
)

__all__ = ["CorpusConfig", "generate_corpus", "write_corpus", "load_task", "default_data_dir", "TOPICS",
           "SENTIMENT_LABELS", "TAGS", "NLI_LABELS", "TASK_SPLITS", "load_sst2", "load_ag_news",
           "load_imdb", "load_mnli", "load_conll2003", "load_wikitext2",
           "UPOS_TAGS", "read_conllu", "load_conllu", "load_ud_english_ewt", "realtext_dir", "is_corpus_sentence",
           "english_sample"]
