"""The `emoloom` command line (also `python -m emoloom`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emoloom.core.errors import EmoloomError, ParamError
from emoloom.core.resources import raw_root, resource_path
from emoloom.data.corpora import FORMATS, ReadOptions


def int_at_least(low: int):
    """An argparse type: an integer >= low."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _default_root() -> str | None:
    """data.raw_root from ./params.yaml when there is one ($EMOLOOM_RAW_ROOT still wins in raw_root())."""
    try:
        from emoloom.core.params import load_section
        return load_section("data")["raw_root"]
    except (OSError, ParamError):
        return None


def cmd_convert(args: argparse.Namespace) -> None:
    from emoloom.data.convert import convert_file, detect_format, summary
    from emoloom.data.lexicon import load_lexicon
    from emoloom.data.weak_vad import WeakVadConfig

    fmt = args.format or detect_format(args.input)
    root = None if args.no_weak_vad and not fmt.startswith("empathetic") else raw_root(args.raw_root or _default_root())
    ed_labels = args.ed_labels or (resource_path(root, "empathetic_labels") if fmt.startswith("empathetic") else None)
    lexicon = None if args.no_weak_vad else load_lexicon(args.lexicon, root)
    n, report = convert_file(args.input, args.output, fmt, args.split,
                             ReadOptions(context_turns=args.context_turns, ed_labels=ed_labels), lexicon,
                             WeakVadConfig(), args.min_tokens, args.max_tokens)
    print(summary(n, report), file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from emoloom.core.io import write_json
    from emoloom.data.lexicon import load_lexicon
    from emoloom.evaluation.runner import EvalConfig
    from emoloom.evaluation.scoring import evaluate_file
    from emoloom.inference.predictor import resolve_model

    cfg = EvalConfig(max_new_tokens=args.max_new_tokens, decode_mode=args.mode, batch_size=args.batch_size,
                     max_len=args.max_len, max_rows=args.max_rows, time_budget_min=args.time_budget_min,
                     context_turns=args.context_turns,
                     stream_seed=args.seed if args.time_budget_min else None, precision=args.precision)
    root = raw_root(args.raw_root or _default_root()) if args.train or args.ekman else None
    lexicon = load_lexicon(args.lexicon, root) if args.train else None
    ekman = json.loads(resource_path(root, "goemotions_ekman").read_text(encoding="utf-8")) if args.ekman else None
    result = evaluate_file(resolve_model(args.model), args.data, args.out, cfg, train_path=args.train, lexicon=lexicon,
                           ekman_mapping=ekman)
    metrics = result["metrics"]
    write_json(args.out / "metrics.json", metrics)
    write_json(args.out / "runtime.json", result["runtime"])
    gen, paper = metrics["generated"], metrics["generated"]["paper"]
    ekman_f1 = f", Ekman-7 strict {gen['ekman']['strict']['macro_f1']}" if ekman else ""
    print(f"{metrics['n_evaluated']}/{metrics['n_records']} rows: ParseOK {gen['parse_ok']}, macro-F1 "
          f"{paper['labels']['macro_f1']} (strict {gen['strict']['labels']['macro_f1']}){ekman_f1}, 1-RMSE "
          f"{paper['vad']['one_minus_rmse']} -> {args.out / 'metrics.json'}")


def cmd_predict(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from emoloom.inference.inputs import read_inputs, rows_from_texts
    from emoloom.inference.outputs import PredictionWriter
    from emoloom.inference.predictor import EmotionModel

    if bool(args.texts) == bool(args.input):
        raise ParamError("give either texts or --input FILE (- for stdin), not both")
    rows = list(rows_from_texts(args.texts, args.context) if args.texts else read_inputs(args.input, args.input_format))
    model = EmotionModel.load(args.model, precision=args.precision)
    writer = PredictionWriter(args.output)
    try:
        with writer, tqdm(total=len(rows), unit=" rows", desc="predict", disable=len(rows) <= args.batch_size) as bar:
            for batch in model.predict_rows(rows, mode=args.mode, decode=args.decode, batch_size=args.batch_size,
                                            max_new_tokens=args.max_new_tokens):
                writer.write(batch)
                bar.update(len(batch))
    except BaseException:
        if writer.partial is not None and writer.rows:
            print(f"interrupted: the {writer.rows} rows done are in {writer.partial}", file=sys.stderr)
        raise
    if writer.path is not None:
        print(f"{writer.rows} rows -> {writer.path}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from emoloom.inference.hf_export import export_model

    print(f"exported {args.model} -> {export_model(args.model, args.out)}", file=sys.stderr)


def cmd_download(args: argparse.Namespace) -> None:
    from emoloom.data.download import download_goemotions

    for path in download_goemotions(raw_root(args.raw_root or _default_root())):
        print(path)


def cmd_diff(args: argparse.Namespace) -> None:
    from emoloom.core.tables import markdown_table
    from emoloom.data.records import read_records
    from emoloom.inference.paired_diff import paired_diff, read_outputs

    table = paired_diff(read_records(args.data), read_outputs(args.a), read_outputs(args.b), args.samples, args.seed)
    print(f"A = {args.a}\nB = {args.b}\npaired bootstrap: {args.samples} resamples, seed {args.seed}\n")
    print(markdown_table(table, align="lrrrrlr"))


def _add_evaluate(sub) -> None:
    """The `evaluate` subcommand's arguments."""
    ev = sub.add_parser("evaluate", help="score a model bundle on a record JSONL (per-example outputs + metrics)")
    ev.add_argument("model", help="a bundle directory (data/sft/<run>/model) or `best` (metrics/best.json)")
    ev.add_argument("data", type=Path, help="record JSONL (from the pipeline or `emoloom convert`)")
    ev.add_argument("--out", type=Path, required=True, help="directory for outputs.jsonl and metrics.json")
    ev.add_argument("--mode", default="exact", choices=["exact", "reference", "cached", "heads"],
                    help="exact: protocol KV-off outputs, fast (default); reference: the plain KV-off loop; "
                         "cached: KV on; heads: no decoding, labels and VAD from the heads")
    ev.add_argument("--time-budget-min", type=positive_float, help="quick mode: stop after this many minutes")
    ev.add_argument("--seed", type=int, default=42, help="quick mode: seeded row order (default: 42)")
    ev.add_argument("--max-rows", type=positive_int, help="evaluate the first N rows only")
    ev.add_argument("--context-turns", type=int_at_least(0), metavar="N",
                    help="dialogue turns shown before each message, the latest ones (default: all the record holds; "
                         "0: the message alone, as the training rows are and as eval_dd_quick probes)")
    ev.add_argument("--max-new-tokens", type=positive_int, default=56,
                    help="decoding budget (default: 56, as params.yaml `eval`: the contract's P99 answer + margin)")
    ev.add_argument("--batch-size", type=positive_int, default=32, help="rows decoded together (default: 32, as `eval`)")
    ev.add_argument("--max-len", type=positive_int, default=1536, help="prompt + answer tokens (default: 1536)")
    ev.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="default: fp32")
    ev.add_argument("--train", type=Path, help="training JSONL: adds the baselines on the same rows")
    ev.add_argument("--ekman", action="store_true",
                    help="also score the labels projected to Ekman-7 (GoEmotions' ekman_mapping.json under the "
                         "raw-data root), as eval_dd_quick scores DailyDialog")
    ev.add_argument("--raw-root", help="raw-data root with the lexicon (for the baselines) and the Ekman mapping")
    ev.add_argument("--lexicon", default="nrc_vad", help="nrc_vad | warriner2013 (default: nrc_vad)")
    ev.set_defaults(func=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoloom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="convert a raw corpus file into record JSONL (QC, dedup, weak VAD)")
    conv.add_argument("input", type=Path, help="raw file: GoEmotions .tsv, ED .csv, DailyDialog .jsonl, EmoBank .csv")
    conv.add_argument("output", type=Path, help="record JSONL to write")
    conv.add_argument("--format", choices=sorted(FORMATS), help="raw format (default: guessed from name and header)")
    conv.add_argument("--split", default="dev", help="split name written into ids and records (default: dev)")
    conv.add_argument("--raw-root", help="raw-data root holding the lexicon and ED labels.txt "
                                         "(default: $EMOLOOM_RAW_ROOT, else data.raw_root of ./params.yaml)")
    conv.add_argument("--lexicon", default="nrc_vad", help="nrc_vad | warriner2013 (default: nrc_vad)")
    conv.add_argument("--no-weak-vad", action="store_true", help="skip weak VAD (records keep vad=null)")
    conv.add_argument("--ed-labels", type=Path, help="EmpatheticDialogues labels.txt (default: from the raw root)")
    conv.add_argument("--context-turns", type=int, default=2, help="dialogue turns kept as context (default: 2)")
    conv.add_argument("--min-tokens", type=int, default=3, help="QC: shortest text kept (default: 3)")
    conv.add_argument("--max-tokens", type=int, default=128, help="QC: longest text kept (default: 128)")
    conv.set_defaults(func=cmd_convert)

    _add_evaluate(sub)

    diff = sub.add_parser("diff", help="is evaluation B better than A? paired bootstrap over the rows both scored")
    diff.add_argument("a", type=Path, help="outputs.jsonl of evaluation A (eval_dev's data/eval/<run>/, or --out of "
                                           "`emoloom evaluate`)")
    diff.add_argument("b", type=Path, help="outputs.jsonl of evaluation B, of the same data file")
    diff.add_argument("--data", type=Path, required=True, help="the record JSONL both evaluated (the gold)")
    diff.add_argument("--samples", type=positive_int, default=1000, help="bootstrap resamples (default: 1000)")
    diff.add_argument("--seed", type=int, default=0, help="resampling seed (default: 0)")
    diff.set_defaults(func=cmd_diff)

    pred = sub.add_parser("predict", help="label your own texts with a trained model (JSONL or CSV out)")
    pred.add_argument("model", help="a bundle directory (data/sft/<run>/model) or `best` (metrics/best.json)")
    pred.add_argument("texts", nargs="*", help="texts to label (or use --input)")
    pred.add_argument("--input", help="a file: plain text (one per line), .csv with a `text` column, or record "
                                      ".jsonl; - for stdin")
    pred.add_argument("--input-format", choices=["text", "csv", "jsonl"], help="default: by the file's extension")
    pred.add_argument("--output", help="predictions file, JSONL (or CSV by extension); default: JSONL on stdout")
    pred.add_argument("--mode", default="generate", choices=["generate", "heads", "both"],
                      help="generate: the decoded JSON answer (default); heads: the heads' labels, probabilities and "
                           "VAD (fast, no decoding); both")
    pred.add_argument("--decode", default="exact", choices=["exact", "cached", "reference"],
                      help="exact: the protocol's KV-off outputs at cached speed (default); cached: KV on, fastest")
    pred.add_argument("--context", action="append", default=[], metavar="TURN",
                      help="an earlier dialogue turn (repeatable, oldest first) for the texts on the command line")
    pred.add_argument("--batch-size", type=positive_int, default=16, help="rows per batch (default: 16)")
    pred.add_argument("--max-new-tokens", type=positive_int, help="decoding budget (default: the bundle's)")
    pred.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="default: fp32")
    pred.set_defaults(func=cmd_predict)

    exp = sub.add_parser("export", help="write a plain Hugging Face model directory (LoRA merged) with its card")
    exp.add_argument("model", help="a bundle directory (data/sft/<run>/model) or `best`")
    exp.add_argument("out", type=Path, help="the directory to write (replaced atomically)")
    exp.set_defaults(func=cmd_export)

    down = sub.add_parser("download", help="fetch GoEmotions from the Hugging Face hub into the raw layout "
                                           "(needs internet and `pip install datasets`)")
    down.add_argument("--raw-root", help="where to write (default: $EMOLOOM_RAW_ROOT, else data.raw_root)")
    down.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (EmoloomError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:
        sys.exit(f"error: {e}")
