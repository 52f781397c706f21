"""The one way every nbinfer magic parses its line: %nbinfer and each of its subcommands, %%generate, %%sgl.

Strict, as jupyter-ai's magics are: no abbreviated flags (`--max 5` must not silently mean
--max-tokens), no -h (help is `%magic?`), and every complaint is one UsageError line that names the
magic -- never a usage dump or a SystemExit inside the kernel. An unknown flag comes with the
nearest real one ("did you mean --temperature?").
"""
from __future__ import annotations

import argparse
import difflib
import shlex

from IPython.core.error import UsageError


def split_line(line: str) -> list[str]:
    """Shell-style words: `--system "Be brief."` is one value, without its quotes."""
    try:
        return shlex.split(line)
    except ValueError as e:                 # an unbalanced quote
        raise UsageError(f"{e} in {line.strip()!r}") from None


class MagicParser(argparse.ArgumentParser):
    """An argparse parser for one magic (prog is its name as typed: "%%generate", "%nbinfer load").

    `hint` is appended to every error (e.g. a usage line); parse_line() is the entry point."""

    def __init__(self, prog: str, hint: str = "", **kwargs):
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(prog=prog, **kwargs)
        self.hint = hint

    def parse_line(self, line: str) -> argparse.Namespace:
        try:
            words = split_line(line)
        except UsageError as e:
            self.error(str(e))
        if "-h" in words or "--help" in words:
            self.error(f"the help is `{self.prog.split()[0]}?`")
        args, unknown = self.parse_known_args(words)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}{self._did_you_mean(unknown)}")
        return args

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}{'; ' + self.hint if self.hint else ''}")

    def exit(self, status=0, message=None):
        self.error((message or "invalid arguments").strip())

    # -- suggestions ------------------------------------------------------------------------------
    def flags(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings if action.help != argparse.SUPPRESS]

    def _did_you_mean(self, unknown: list[str]) -> str:
        pairs = [(word, flag) for word in unknown if (flag := nearest_flag(word, self.flags())) is not None]
        if len(pairs) == 1:
            return f" (did you mean {pairs[0][1]}?)"
        return f" (did you mean {', '.join(f'{flag} for {word}' for word, flag in pairs)}?)" if pairs else ""


def nearest_flag(word: str, flags: list[str]) -> str | None:
    """The flag the user most likely meant by `word` (`--temprature`, `--max_tokens`, `--num-kv`,
    `--n`), or None. Only words that look like flags get one: a stray value is not a typo of a flag."""
    if not word.startswith("-") or len(word) < 2 or word[1:2].isdigit():
        return None
    typed = word.split("=", 1)[0].replace("_", "-").lower()
    bare = typed.lstrip("-")
    for form in (typed, f"-{bare}", f"--{bare}"):      # --max_tokens, --Temperature, --n for -n
        if form in flags:
            return form
    longer = [f for f in flags if f.startswith(typed)] if typed.startswith("--") and len(bare) > 1 else []
    if longer:                        # an abbreviation, which we refuse to guess silently: name it if unique
        return longer[0] if len(longer) == 1 else None
    close = difflib.get_close_matches(typed, flags, n=1, cutoff=0.75)
    return close[0] if close else None
