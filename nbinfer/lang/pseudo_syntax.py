"""Source pre-pass for the seed's block pseudo-syntax, which is not valid Python:

    s.if_(cond):        ->  if   (cond):
    s.elif_(cond):      ->  elif   (cond):
    s.while_(cond):     ->  while   (cond):
    s.else_():          ->  else     :

Each rewrite keeps the line's length and the column of everything after it, so ast line and column
numbers (and therefore error messages) still point at what the user wrote. Only whole statements are
rewritten: `<name>.<form>(...)` must open a logical line and be followed by `:`. The tokenizer
finds them, so text inside strings and comments is never touched.
"""
from __future__ import annotations

import io
import tokenize

_BLOCK_FORMS = {"if_": "if", "elif_": "elif", "while_": "while"}
_LINE_START = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT,
               tokenize.ENCODING}


def rewrite_pseudo_syntax(source: str) -> str:
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source           # let ast.parse report the problem with its own position
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []     # (row, start col, end col, replacement)
    i = 0
    while i < len(toks):
        if _starts_statement(toks, i) and _is_form(toks, i):
            name, dot, form, lpar = toks[i:i + 4]
            close = _matching_paren(toks, i + 3)
            if close is not None and _followed_by_colon(toks, close):
                row, col = name.start
                if form.string == "else_":
                    rpar = toks[close]
                    if close == i + 4 and rpar.start[0] == row:     # `s.else_()` exactly
                        width = rpar.end[1] - col
                        edits.append((row, col, rpar.end[1], "else".ljust(width)))
                else:
                    keyword = _BLOCK_FORMS[form.string]
                    width = lpar.end[1] - col
                    if lpar.start[0] == row:
                        edits.append((row, col, lpar.end[1], keyword.ljust(width - 1) + "("))
        i += 1
    for row, start, end, text in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + text + line[end:]
    return "".join(lines)


def _starts_statement(toks, i: int) -> bool:
    j = i - 1
    while j >= 0 and toks[j].type in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.NL):
        j -= 1
    return j < 0 or toks[j].type in _LINE_START


def _is_form(toks, i: int) -> bool:
    if i + 3 >= len(toks):
        return False
    name, dot, form, lpar = toks[i:i + 4]
    return (name.type == tokenize.NAME and dot.string == "." and form.type == tokenize.NAME
            and form.string in ("if_", "elif_", "while_", "else_") and lpar.string == "(")


def _matching_paren(toks, open_index: int) -> int | None:
    depth = 0
    for k in range(open_index, len(toks)):
        s = toks[k].string
        if toks[k].type == tokenize.OP and s in "([{":
            depth += 1
        elif toks[k].type == tokenize.OP and s in ")]}":
            depth -= 1
            if depth == 0:
                return k
        elif toks[k].type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            return None
    return None


def _followed_by_colon(toks, close: int) -> bool:
    k = close + 1
    return k < len(toks) and toks[k].type == tokenize.OP and toks[k].string == ":"
