"""The ``dtm`` command: pretrain a base model, fine-tune it with DTM, evaluate or sample a checkpoint, run studies."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dtm.config import ConfigError, load_config


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file (defaults apply to missing keys)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys, e.g. h=0.5")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from dtm.training.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    pretrain(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"saved {Path(cfg.output_dir) / 'model'}")


def cmd_train(args: argparse.Namespace) -> None:
    from dtm.training import load_train_config, make_trainer

    cfg = load_train_config(args.config, args.overrides)  # `method: dtm | diffu_grpo | wd1 | spg | dmpo | gdsd`
    if not Path(cfg.base_model).joinpath("config.json").is_file():
        raise ConfigError(f"base_model: no model checkpoint at {cfg.base_model} (run `dtm pretrain` first?)")
    trainer = make_trainer(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    trainer.train()
    print(f"saved {Path(cfg.output_dir) / 'final' / 'model'}")


def cmd_sample(args: argparse.Namespace) -> None:
    import torch

    from dtm.models import load_model
    from dtm.sampling import SamplingConfig, rollout
    from dtm.tasks import get_task

    task = get_task(args.task)
    model = load_model(args.model)
    sampling = SamplingConfig(
        gen_length=task.gen_length, block_length=args.block_length, steps=args.steps, temperature=args.temperature
    )
    prompts = task.prompts(args.n, split="test", seed=args.seed)
    responses = rollout(model, prompts, sampling, torch.Generator().manual_seed(args.seed))
    rewards = task.reward(responses, prompts.meta)
    for prompt, response, reward in zip(prompts.ids, responses, rewards, strict=True):
        print(f"{task.render(prompt.tolist())} -> {task.render(response.tolist())}  reward={reward:.3f}")
    print(f"mean reward {rewards.mean():.3f}")


# ``dtm eval`` flag -> config key (values are passed as YAML, like key=value overrides).
EVAL_FLAGS = {
    "model": "model",
    "adapter": "adapter",
    "task": "task",
    "gen_length": "gen_lengths",
    "steps": "steps",
    "block_length": "block_length",
    "temperature": "temperature",
    "prefix_cache": "prefix_cache",
    "num_examples": "num_examples",
    "batch_size": "batch_size",
    "split": "split",
    "seed": "seed",
    "style": "task_options.style",
    "source": "task_options.source",
    "trust_remote_code": "load.trust_remote_code",
    "dtype": "load.dtype",
    "load_in_4bit": "load.load_in_4bit",
    "mask_token_id": "load.mask_token_id",
    "max_prompt_length": "max_prompt_length",
    "prompt_truncation": "prompt_truncation",
    "output_dir": "output_dir",
}


def cmd_eval(args: argparse.Namespace) -> None:
    from dtm.evaluation import EvalConfig, markdown_table, run_eval

    flags = [
        f"{key}={json.dumps(str(value) if isinstance(value, Path) else value)}"
        for name, key in EVAL_FLAGS.items()
        if (value := getattr(args, name)) is not None
    ]
    cfg = load_config(EvalConfig, args.config, [*flags, *args.overrides])
    rows = run_eval(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    for row in rows:
        print(f"length {row['gen_length']}: {row['reused']} of {row['n']} samples reused from {cfg.output_dir}")
    print(markdown_table(rows))
    print(f"samples and results: {cfg.output_dir}")


def cmd_study(args: argparse.Namespace) -> None:
    if args.name == "compare":
        from dtm.studies import compare

        cfg = load_config(compare.CompareConfig, args.config, args.overrides)
        summary = compare.run_compare(cfg, overwrite=args.overwrite, progress=not args.no_progress)
        print(compare.markdown_tables(summary))
    elif args.name == "fit":
        from dtm.studies import fit

        cfg = load_config(fit.FitStudyConfig, args.config, args.overrides)
        summary = fit.run_fit_study(cfg, overwrite=args.overwrite, progress=not args.no_progress)
        print(fit.markdown_tables(summary))
    else:
        from dtm.studies import maze

        cfg = load_config(maze.MazeStudyConfig, args.config, args.overrides)
        results = maze.run_maze_study(cfg, overwrite=args.overwrite, progress=not args.no_progress)
        print(maze.markdown_table(results))
    print(f"report: {Path(cfg.output_dir) / 'report.md'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from dtm.demo import run_demo

    result = run_demo(Path(args.output_dir), quick=args.quick, progress=not args.no_progress)
    print(json.dumps(result, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtm", description="Discrete Tilt Matching for masked diffusion LMs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="masked-diffusion pretraining of the built-in model on a task")
    _add_config_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train", help="fine-tune a model with DTM (or method=diffu_grpo|wd1|spg|dmpo|gdsd)")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="greedy-decode a task's test set at several lengths; accuracy table + samples")
    _add_config_args(p)
    p.add_argument("--model", type=Path, help="model folder (built-in, LLaDA, Dream, ...)")
    p.add_argument("--adapter", type=Path, help="LoRA adapter folder to apply (e.g. RUN/final/adapter)")
    p.add_argument("--task", help="task name (countdown, sudoku, gsm8k, math500, sudoku_digits, maze, ...)")
    p.add_argument("--gen-length", type=int, nargs="+", help="generation lengths (default 256)")
    p.add_argument("--steps", type=int, help="decoding steps (default: gen_length / 2)")
    p.add_argument("--block-length", type=int, help="SAR block length (default 32)")
    p.add_argument("--temperature", type=float, help="0 = greedy (default)")
    p.add_argument("--prefix-cache", action="store_const", const=True, help="approximate prefix KV caching")
    p.add_argument("--num-examples", type=int, help="test examples (default 256)")
    p.add_argument("--batch-size", type=int, help="prompts per decoding batch (default 16)")
    p.add_argument("--split", choices=["train", "test"])
    p.add_argument("--seed", type=int)
    p.add_argument("--style", choices=["reasoning", "chat"], help="text tasks: prompt style (default reasoning)")
    p.add_argument("--source", help="text tasks: hub, generate, or a local .jsonl/.csv file")
    p.add_argument("--trust-remote-code", action="store_const", const=True, help="for LLaDA / Dream folders")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--load-in-4bit", action="store_const", const=True, help="NF4 base (bitsandbytes, GPU)")
    p.add_argument("--mask-token-id", type=int, help="if neither config nor tokenizer names one")
    p.add_argument("--max-prompt-length", type=int, help="0 = no limit")
    p.add_argument("--prompt-truncation", choices=["error", "left"])
    p.add_argument("--output-dir", type=Path, help="where samples and results go (default runs/eval)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="decode test prompts of a task with a saved model")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--task", default="increment")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--block-length", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "study",
        help="run a study end to end (maze: h and c vs reward, stability, mode collapse; "
        "compare: DTM vs diffu-GRPO, wd1 and SPG at equal rollouts; fit: exact per-phase fit of DTM on mazes)",
    )
    p.add_argument("name", choices=["maze", "compare", "fit"])
    _add_config_args(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="pretrain a base model, run DTM, and compare with the exact tilted target")
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (argparse stops collecting positionals at the first option).
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.func(args)
    except (ConfigError, FileNotFoundError, FileExistsError, PermissionError, ValueError) as e:
        if os.environ.get("DTM_TRACEBACK"):
            raise
        print(f"dtm {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
