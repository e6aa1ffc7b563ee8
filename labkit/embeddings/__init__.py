"""Word embeddings written out: vocabulary, skip-gram with negative sampling, GloVe, evaluation.

One idea per module:

- `vocab`: `Vocab.build`, word counts and ids (the vocabulary gensim's `Word2Vec` keeps for a
  `min_count`); `keep_probabilities`, `noise_distribution`: word2vec's subsampling of frequent
  words and its unigram^0.75 noise distribution (the numbers gensim stores as `sample_int` and
  `cum_table`); `noise_table`: word2vec's table for drawing noise words fast;
- `skipgram`: `skipgram_pairs`, (centre, context) pairs with word2vec's randomly shrunk window,
  vectorised; `SkipGramNS`, `train_sgns`: the skip-gram model and a batched PyTorch training loop;
- `glove`: `cooccurrence`, `glove_weight`, `GloVe`, `train_glove`: a distance-weighted
  co-occurrence matrix and its weighted least-squares factorisation;
- `vectors`: `WordVectors`, `evaluate_similarity`, `evaluate_analogies`: cosine neighbours,
  Spearman correlation with human scores, 3CosAdd analogies (the same numbers as gensim's
  evaluators); `validation_half`: the fixed validation/test split of a word-pair benchmark;
- `training`: `TrainResult`, what both trainers return.

Everything is importable from `labkit.embeddings` itself, as before the split.
"""
from .glove import GloVe, cooccurrence, glove_weight, train_glove
from .skipgram import SkipGramNS, skipgram_pairs, train_sgns
from .training import TrainResult
from .vectors import WordVectors, evaluate_analogies, evaluate_similarity, validation_half
from .vocab import Vocab, keep_probabilities, noise_distribution, noise_table

__all__ = [
    "Vocab", "keep_probabilities", "noise_distribution", "noise_table", "skipgram_pairs", "SkipGramNS",
    "TrainResult", "train_sgns", "cooccurrence", "glove_weight", "GloVe", "train_glove", "WordVectors",
    "evaluate_similarity", "evaluate_analogies", "validation_half",
]
