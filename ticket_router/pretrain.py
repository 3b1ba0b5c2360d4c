"""`ticket-router pretrain`: continued masked-language-model pretraining of the backbone on ticket texts.

Domain-adaptive pretraining (issue 12): the encoder keeps learning the language of the tickets (training texts,
or unlabeled tickets a user has) before `ticket-router train --backbone DIR` fine-tunes the heads on it. The output
directory is a plain encoder + tokenizer, loaded exactly like any other backbone, plus `pretrain.json`.

Masking is plain token masking: transformers' whole-word masking needs each token's offsets, which its own dynamic
padding cannot pad, so it would mean padding every ticket to `max_length` (several times the compute on tickets).
The vocabulary is scored at the masked positions only (`mlm.MaskedTokensTrainer`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_directory
from .backbone import DEFAULT_BACKBONE, resolve_backbone
from .backbone import _sha256 as file_sha256  # as export.py does
from .errors import InputError, first_line

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, Trainer

logger = logging.getLogger(__name__)

RECORD_NAME = "pretrain.json"

DEFAULT_TEXT_COLUMNS = ["text"]


@dataclass
class PretrainConfig:
    """Every setting of `ticket-router pretrain` (from the flags, and from a training config's data keys)."""

    output: str
    texts: str
    text_columns: list[str] = field(default_factory=lambda: list(DEFAULT_TEXT_COLUMNS))
    encoding: str = "utf-8"
    backbone: str | None = None
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    mlm_probability: float = 0.15
    eval_fraction: float = 0.05
    seed: int = 42
    logging_steps: int = 50

    def validate(self) -> None:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise InputError(f"--epochs {self.epochs}: must be > 0 (or give --max-steps)")
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate {self.learning_rate}: must be > 0")
        for name in ("batch_size", "max_length", "logging_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if not 0 < self.mlm_probability < 1:
            raise InputError(f"--mlm-probability {self.mlm_probability}: must be in (0, 1)")
        if not 0 <= self.eval_fraction < 1:
            raise InputError(f"--eval-fraction {self.eval_fraction}: must be in [0, 1)")


@dataclass
class PretrainRecord:
    """`pretrain.json`: where the encoder came from, on what texts, and what the pretraining did to perplexity."""

    source_backbone: str
    texts_file: str
    texts_sha256: str
    text_columns: list[str] | None  # None for a .txt file (one ticket per line)
    texts: int  # non-blank texts read
    blank: int  # blank rows or lines left out
    train_texts: int
    eval_texts: int
    epochs: float
    max_steps: int
    global_steps: int
    learning_rate: float
    batch_size: int
    max_length: int
    mlm_probability: float
    whole_word_mask: bool
    mlm_head_initialised_fresh: bool
    eval_perplexity_before: float | None
    eval_perplexity_after: float | None
    train_runtime_s: float
    seed: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


@dataclass
class TicketTexts:
    """The non-blank texts of a file, and how many blank rows or lines were left out."""

    texts: list[str]
    blank: int
    columns: list[str] | None


def read_ticket_texts(path: str, text_columns: list[str], encoding: str | None = None) -> TicketTexts:
    """A .txt file gives one ticket per line; a table gives its text columns joined as training joins them."""
    from .data import join_text_columns, read_lines, read_table

    if path.endswith(".txt"):
        texts, columns = read_lines(path, encoding), None
        if not texts:
            raise InputError(f"{path}: empty file (no lines)")
    else:
        texts, columns = join_text_columns(read_table(path, encoding=encoding), text_columns, path, warn_blank=False), text_columns
    kept = [text.strip() for text in texts if text.strip()]
    blank = len(texts) - len(kept)
    if not kept:
        raise InputError(f"{path}: no text to pretrain on: all {blank} row(s) are blank"
                         + (f" in {', '.join(columns)}" if columns else ""))
    if blank:
        logger.warning("%s: left out %d blank row(s) of %d", path, blank, len(texts))
    return TicketTexts(kept, blank, columns)


def split_texts(texts: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random share of the texts held out to measure perplexity (at least one each way)."""
    import numpy as np

    if eval_fraction == 0:
        return texts, []
    n_eval = max(1, round(len(texts) * eval_fraction))
    if n_eval >= len(texts):
        raise InputError(f"--eval-fraction {eval_fraction}: leaves no training text of {len(texts)}")
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[n_eval:]], [texts[i] for i in order[:n_eval]]


def tokenize_texts(texts: list[str], tokenizer: Any, max_length: int) -> datasets.Dataset:
    """Model inputs plus the special-tokens mask, which the collator would otherwise recompute per batch."""
    import datasets

    names = [n for n in tokenizer.model_input_names if n != "token_type_ids"] + ["special_tokens_mask"]

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length, return_special_tokens_mask=True)
        return {name: encoded[name] for name in names}

    dataset = datasets.Dataset.from_dict({"text": texts})
    return dataset.map(tokenize, batched=True, remove_columns=["text"], desc="Tokenizing")


def load_masked_lm(location: str, label: str) -> tuple[PreTrainedModel, Any, bool]:
    """(model with an MLM head, tokenizer, whether the head was initialised fresh) for a backbone."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model, info = AutoModelForMaskedLM.from_pretrained(location, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise InputError(f"--backbone {label}: could not load a masked-language model: {first_line(error)}") from error
    if tokenizer.mask_token is None:
        raise InputError(f"--backbone {label}: its tokenizer has no mask token; it cannot be pretrained by masking")
    prefix = model.base_model_prefix + "."
    head_missing = [key for key in info.get("missing_keys", ()) if not key.startswith(prefix)]
    if head_missing:
        logger.warning("--backbone %s has no MLM-head weights (%d tensor(s), e.g. %s): the head is initialised "
                       "fresh, so the perplexity before pretraining is that of an untrained head",
                       label, len(head_missing), sorted(head_missing)[0])
    return model, tokenizer, bool(head_missing)


def masked_perplexity(trainer: Trainer, dataset: datasets.Dataset | None, make_collator: Any) -> float | None:
    """exp(mean masked-token loss) on the held-out texts, masked the same way each time (a fresh seeded collator)."""
    if dataset is None:
        return None
    training_collator = trainer.data_collator
    trainer.data_collator = make_collator()
    try:
        loss = trainer.evaluate(dataset)["eval_loss"]
    finally:
        trainer.data_collator = training_collator
    return round(math.exp(loss), 3) if loss < 50 else math.inf


def encoder_of(masked_lm: PreTrainedModel, location: str) -> PreTrainedModel:
    """The source backbone's own encoder class (its pooler kept) with the pretrained weights: what `train` loads."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(location)
    result = encoder.load_state_dict(masked_lm.base_model.state_dict(), strict=False)
    if result.unexpected_keys or any(not key.startswith("pooler.") for key in result.missing_keys):
        raise RuntimeError(f"pretrained weights do not fit the encoder: missing {result.missing_keys}, "
                           f"unexpected {result.unexpected_keys}")
    return encoder


def check_output(path: Path) -> None:
    """A pretrain may replace its own earlier output (atomically), never someone's other files."""
    from .model_dir import check_replaceable

    check_replaceable(path, lambda p: (p / RECORD_NAME).is_file(), f"a pretrained backbone (no {RECORD_NAME})")


def _training_arguments(config: PretrainConfig, scratch: Path):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(scratch), num_train_epochs=config.epochs, max_steps=config.max_steps,
        learning_rate=config.learning_rate, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 64), warmup_steps=0.06, weight_decay=0.01,
        seed=config.seed, logging_steps=config.logging_steps, save_strategy="no",
        eval_strategy="no", report_to="none",
        remove_unused_columns=False,  # keeps special_tokens_mask for the collator
        prediction_loss_only=True,
    )


def pretrain(config: PretrainConfig) -> PretrainRecord:
    """Continue MLM pretraining of `config.backbone` on the texts; save the encoder and `pretrain.json`."""
    from transformers import DataCollatorForLanguageModeling, set_seed

    from .mlm import MaskedTokensTrainer

    config.validate()
    output = Path(config.output)
    check_output(output)  # before the hours of pretraining, not after
    tickets = read_ticket_texts(config.texts, config.text_columns, config.encoding)
    train_texts, eval_texts = split_texts(tickets.texts, config.eval_fraction, config.seed)
    label = config.backbone or DEFAULT_BACKBONE
    location = resolve_backbone(config.backbone)
    set_seed(config.seed)
    model, tokenizer, head_fresh = load_masked_lm(location, label)
    logger.info("Pretraining %s on %d text(s) of %s (%d held out for perplexity)", label, len(train_texts),
                config.texts, len(eval_texts))

    def make_collator():
        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability, seed=config.seed)

    eval_dataset = tokenize_texts(eval_texts, tokenizer, config.max_length) if eval_texts else None
    with atomic_directory(output) as staging:
        trainer = MaskedTokensTrainer(model=model, args=_training_arguments(config, staging / "scratch"),
                                      train_dataset=tokenize_texts(train_texts, tokenizer, config.max_length),
                                      data_collator=make_collator(), processing_class=tokenizer)
        before = masked_perplexity(trainer, eval_dataset, make_collator)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        after = masked_perplexity(trainer, eval_dataset, make_collator)
        logger.info("Held-out masked-token perplexity: %s before, %s after", before, after)
        record = PretrainRecord(
            source_backbone=label, texts_file=str(config.texts), texts_sha256=file_sha256(Path(config.texts)),
            text_columns=tickets.columns, texts=len(tickets.texts), blank=tickets.blank,
            train_texts=len(train_texts), eval_texts=len(eval_texts), epochs=config.epochs,
            max_steps=config.max_steps, global_steps=trainer.state.global_step, learning_rate=config.learning_rate,
            batch_size=config.batch_size, max_length=config.max_length, mlm_probability=config.mlm_probability,
            whole_word_mask=False, mlm_head_initialised_fresh=head_fresh, eval_perplexity_before=before,
            eval_perplexity_after=after, train_runtime_s=round(seconds, 1), seed=config.seed)
        shutil.rmtree(staging / "scratch", ignore_errors=True)  # the Trainer's output_dir; nothing saved there
        encoder_of(trainer.accelerator.unwrap_model(trainer.model), location).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / RECORD_NAME).write_text(record.to_json(), encoding="utf-8")
        (staging / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
    logger.info("Saved the pretrained backbone to %s (train with --backbone %s)", output, output)
    return record


# ---------------------------------------------------------------------------------------------- command line

def config_from_args(args: Any) -> PretrainConfig:
    """--texts FILE, or --config YAML (its training file, text columns, encoding, backbone, max_length); flags win."""
    values: dict[str, Any] = {}
    if args.config:
        from .config import TrainConfig, load_yaml_config

        training = TrainConfig(**load_yaml_config(args.config))  # its defaults too: text_columns, max_length
        if not training.train:
            raise InputError(f"--config {args.config}: no 'train' file to read the texts from")
        values = {"texts": training.train, "text_columns": training.text_columns, "encoding": training.encoding,
                  "backbone": training.backbone, "max_length": training.max_length}
    else:
        values["texts"] = args.texts
    if args.text_column:
        values["text_columns"] = [c.strip() for item in args.text_column for c in item.split(",") if c.strip()]
    flags = ("output", "encoding", "backbone", "epochs", "max_steps", "learning_rate", "batch_size", "max_length",
             "mlm_probability", "eval_fraction", "seed", "logging_steps")
    values.update({name: getattr(args, name) for name in flags if getattr(args, name) is not None})
    return PretrainConfig(**values)


def cmd_pretrain(args: Any) -> int:
    record = pretrain(config_from_args(args))
    print(record.to_json(), end="")
    return 0


def add_pretrain_command(commands) -> None:
    """`ticket-router pretrain` on the CLI's subparsers."""
    parser = commands.add_parser("pretrain", help="Continue masked-language-model pretraining of the backbone on "
                                                  "ticket texts (labels ignored); then train --backbone OUTPUT.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="Training YAML: pretrain on its training file's text columns, with its "
                                         "backbone and max_length.")
    source.add_argument("--texts", help="Tickets: .csv, .tsv, .jsonl, .parquet (see --text-column) or .txt (one per line).")
    parser.add_argument("--text-column", action="append", metavar="COLUMN",
                        help="Text column(s), repeatable or comma-separated, joined in order. Default: text "
                             "(with --config: its text_columns).")
    parser.add_argument("--output", required=True, help="Directory for the pretrained encoder (replaced atomically "
                                                        "if it holds an earlier pretrain).")
    parser.add_argument("--backbone", help="Encoder to start from (default: the config's, else packaged all-MiniLM-L6-v2).")
    parser.add_argument("--encoding", help="Text encoding of the file (default utf-8).")
    parser.add_argument("--epochs", type=float, help="Passes over the texts. Default: 1.")
    parser.add_argument("--max-steps", type=int, help="Stop after N optimizer steps (overrides --epochs).")
    parser.add_argument("--learning-rate", type=float, help="Default: 5e-5.")
    parser.add_argument("--batch-size", type=int, help="Default: 16.")
    parser.add_argument("--max-length", type=int, help="Tokens per ticket. Default: 128 (with --config: its max_length).")
    parser.add_argument("--mlm-probability", type=float, help="Share of tokens masked. Default: 0.15.")
    parser.add_argument("--eval-fraction", type=float, help="Share of texts held out for perplexity (0: none). "
                                                            "Default: 0.05.")
    parser.add_argument("--seed", type=int, help="Default: 42.")
    parser.add_argument("--logging-steps", type=int, help="Log the loss every N steps. Default: 50.")
    parser.set_defaults(func=cmd_pretrain)
