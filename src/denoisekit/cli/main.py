"""The command line: `denoisekit train | train-classifier | train-clip | train-autoencoder | distill | reflow | sample |
upscale | eval | invert | interpolate | edit | ema | nll | info | export`, behind one error boundary."""
from __future__ import annotations

import argparse
import sys

from . import cascade, ddim, distill, edit, ema, export, info, sample, train


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `denoisekit VERB: error: ...` and a pointer to --help, no usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _warn_one_line(command: str):
    """warnings.showwarning writing `denoisekit VERB: warning: ...` on one line."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"denoisekit {command}: warning: {_one_line(message)}", file=file or sys.stderr)
    return show


def main(argv=None) -> int:
    """The command line, with one error boundary: a library error is one line on stderr (--debug: the traceback)."""
    p = _parser()
    args = p.parse_args(argv)
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
        p.error("--n: expected a positive number of samples")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _warn_one_line(args.command)
        return _run(args)


def _run(args) -> int:
    """The error boundary around one command."""
    from ..train.trainer import TrainingInterrupted
    try:
        return args.func(args)
    except TrainingInterrupted as e:
        print(f"denoisekit {args.command}: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"denoisekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # the library's errors (and files that cannot be read or written)
        if args.debug:
            raise
        print(f"denoisekit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line, and a way to see it
        if args.debug:
            raise
        print(f"denoisekit {args.command}: internal error: {type(e).__name__}: {_one_line(e)[:300]} (rerun with "
              f"--debug for the traceback, and please report it)", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p = Parser(prog="denoisekit", description="Denoising-diffusion models: train, sample, inspect.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for verbs in (train, distill, sample, cascade, ddim, edit, ema, export, info):
        verbs.add_parsers(sub, common)
    return p


if __name__ == "__main__":
    sys.exit(main())
