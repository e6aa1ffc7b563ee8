"""The machinery of the book: the manifest, recording results, setting a chapter up, the runner,
the CLI, the report and the HTML book. Teaching modules never import this package.

Notebooks use `labkit.setup`, `labkit.record`, `labkit.check_targets` (re-exported by `labkit`),
`book.run_dir()` for files a chapter writes, and `book.metrics_of(chapter)` to read another
chapter's results.
"""
from .manifest import (DEFAULT_PROFILE, ENV_METRICS, ENV_PROFILE, ENV_ROOT, OPS, PROFILES, STATUSES, Book,
                       Chapter, ManifestError, Part, Target, evaluate_targets, find_root, load_book, parse_book)
from .results import (active_profile, chapter_minutes, check_targets, metrics_of, metrics_path, record, recorded,
                     run_dir, set_chapter)
from .session import Setup, machine, profile_environment, seed_everything, setup
from .card import MODEL_CARD_SECTIONS, model_card

__all__ = ["DEFAULT_PROFILE", "ENV_METRICS", "ENV_PROFILE", "ENV_ROOT", "OPS", "PROFILES", "STATUSES", "Book",
           "Chapter", "ManifestError", "Part", "Target", "evaluate_targets", "find_root", "load_book", "parse_book",
           "active_profile", "check_targets", "metrics_of", "record", "recorded", "run_dir", "set_chapter",
           "Setup", "machine", "profile_environment", "seed_everything", "setup", "MODEL_CARD_SECTIONS",
           "model_card", "chapter_minutes", "metrics_path"]
