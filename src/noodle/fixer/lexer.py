"""A tolerant Python lexer and the language model's alphabet.

Why not ``tokenize`` itself: the fixer lexes code that is broken by
definition, and ``tokenize`` gives up exactly there (an unterminated
triple-quoted string, an unclosed bracket at the end of the file, a dedent to
a column no block opened), or, after one ``)`` too many, lexes the rest of the
file as a single continued line. The repair engine needs tokens for the whole
file, so this module is a port of CPython 3.11's pure-Python tokenizer loop
(same regular expressions, same positions, same ``line`` fields) with those
four places made to recover instead of raising. On code that ``tokenize``
accepts the output is token for token what ``tokenize.generate_tokens`` gives
on Python 3.11 (the tests check it on standard-library files); on other
versions it keeps 3.11's conventions (an f-string is one STRING token), so the
model sees the same alphabet everywhere.

What recovery does, so the engine knows what it is looking at:

- an unterminated ``'``/``"`` string (with its prefix) becomes one
  ``ERRORTOKEN`` from the prefix to the end of its line (the newline is lexed
  as usual); an unterminated triple-quoted string becomes one ``ERRORTOKEN``
  from its start to the end of the file. Both map to the symbol ``<BADSTR>``.
- any other character that starts no token (``$``, ``?``, a stray ``\\``) is a
  one-character ``ERRORTOKEN`` (symbol ``<ERR>``); the blanks before it are
  skipped (``tokenize`` 3.11 reports each one as an ``ERRORTOKEN``).
- an unclosed bracket or a backslash continuation at the end of the file gets
  an empty ``NEWLINE`` at the end of the last line, then the usual DEDENTs and
  the ENDMARKER.
- a dedent to a column that matches no open block closes the blocks deeper
  than it (DEDENTs) and opens one at that column (an INDENT), so the lines
  after it lex as they would had the block been opened there.
- a closing bracket with none open is an ``OP`` that leaves the bracket depth
  at zero, so the following lines keep their NEWLINE/INDENT/DEDENT tokens.

Example::

    from noodle.fixer.lexer import lex, symbols
    toks = lex("def f(x)\\n    return x\\n")
    print(symbols(toks))   # ['<s>', 'def', '<NAME>', '(', '<NAME>', ')', '<NL>', '<IN>', 'return', ...]
"""

from __future__ import annotations

import itertools
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BAD_STRING", "BOS", "DEDENT_SYM", "EOS", "ERROR", "INDENT_SYM", "KEYWORDS", "NAME_SYM",
    "NEWLINE_SYM", "NUM_SYM", "OPERATORS", "STR_SYM", "Tok", "fixed_symbols", "lex", "symbol_of",
    "symbols",
]


@dataclass(frozen=True, slots=True)
class Tok:
    """One token, with ``tokenize``'s conventions: ``start``/``end`` are (line 1-based, col 0-based),
    ``kind`` is ``tokenize``'s type name (OP for every operator), ``line`` the physical line(s) it is on."""

    kind: str
    text: str
    start: tuple[int, int]
    end: tuple[int, int]
    line: str


# --- the alphabet -------------------------------------------------------------------------------

BOS = "<s>"
EOS = "</s>"
NAME_SYM = "<NAME>"
NUM_SYM = "<NUM>"
STR_SYM = "<STR>"
BAD_STRING = "<BADSTR>"
ERROR = "<ERR>"
NEWLINE_SYM = "<NL>"
INDENT_SYM = "<IN>"
DEDENT_SYM = "<DE>"

#: Hard keywords and the soft keywords of 3.10-3.12 (fixed here, not read from ``keyword``, so the
#: alphabet does not change with the interpreter that trains or loads the model).
KEYWORDS: frozenset[str] = frozenset(keyword.kwlist) | {"match", "case", "type", "_"}

#: Python 3.11's operators and delimiters (``token.EXACT_TOKEN_TYPES``), fixed for the same reason.
OPERATORS: tuple[str, ...] = (
    "!=", "%", "%=", "&", "&=", "(", ")", "*", "**", "**=", "*=", "+", "+=", ",", "-", "-=", "->",
    ".", "...", "/", "//", "//=", "/=", ":", ":=", ";", "<", "<<", "<<=", "<=", "=", "==", ">", ">=",
    ">>", ">>=", "@", "@=", "[", "]", "^", "^=", "{", "|", "|=", "}", "~",
)

_KIND_SYMBOL = {
    "NUMBER": NUM_SYM, "STRING": STR_SYM, "NEWLINE": NEWLINE_SYM, "INDENT": INDENT_SYM,
    "DEDENT": DEDENT_SYM, "ENDMARKER": EOS, "COMMENT": None, "NL": None,
}


def fixed_symbols() -> list[str]:
    """Every symbol that is in the alphabet whatever the name vocabulary: the specials, keywords and
    operators (the model's vocabulary is these plus the frequent identifiers it kept)."""
    specials = [BOS, EOS, NAME_SYM, NUM_SYM, STR_SYM, BAD_STRING, ERROR, NEWLINE_SYM, INDENT_SYM,
                DEDENT_SYM]
    return specials + sorted(KEYWORDS) + list(OPERATORS)


def symbol_of(tok: Tok, vocab: frozenset[str] | None = None) -> str | None:
    """The model's symbol for one token, or None for the tokens the model does not see (COMMENT, NL).

    Names: keywords and soft keywords are themselves; any other name is itself when it is in
    ``vocab`` (the identifiers the model kept) or when ``vocab`` is None, else ``<NAME>``.
    Operators are themselves; NUMBER ``<NUM>``; STRING ``<STR>``; NEWLINE ``<NL>``; INDENT ``<IN>``;
    DEDENT ``<DE>``; ENDMARKER ``</s>``; an unterminated string ``<BADSTR>``; any other
    ERRORTOKEN ``<ERR>``.
    """
    kind = tok.kind
    if kind == "NAME":
        text = tok.text
        if vocab is None or text in vocab or text in KEYWORDS:
            return text
        return NAME_SYM
    if kind == "OP":
        return tok.text
    if kind == "ERRORTOKEN":
        return BAD_STRING if _BADSTR.match(tok.text) else ERROR
    return _KIND_SYMBOL.get(kind, ERROR)


def symbols(toks: Sequence[Tok], vocab: frozenset[str] | None = None) -> list[str]:
    """The symbol sequence the language model scores: ``<s>`` then :func:`symbol_of` of each token,
    COMMENT and NL dropped. The last symbol is ``</s>`` when ``toks`` ends with the ENDMARKER."""
    out = [BOS]
    append = out.append
    kw = KEYWORDS
    kinds = _KIND_SYMBOL
    for tok in toks:
        kind = tok.kind
        if kind == "NAME":
            text = tok.text
            append(text if vocab is None or text in vocab or text in kw else NAME_SYM)
        elif kind == "OP":
            append(tok.text)
        else:
            sym = symbol_of(tok, vocab) if kind == "ERRORTOKEN" else kinds.get(kind, ERROR)
            if sym is not None:
                append(sym)
    return out


# --- the scanner (Python 3.11's tokenize loop, tolerant) ----------------------------------------

def _group(*choices: str) -> str:
    return "(" + "|".join(choices) + ")"


def _all_string_prefixes() -> set[str]:
    result = {""}
    for prefix in ("b", "r", "u", "f", "br", "fr"):
        for t in itertools.permutations(prefix):
            for u in itertools.product(*[(c, c.upper()) for c in t]):
                result.add("".join(u))
    return result


_PREFIXES = _all_string_prefixes()
_Whitespace = r"[ \f\t]*"
_Comment = r"#[^\r\n]*"
_Name = r"\w+"
_Hexnumber = r"0[xX](?:_?[0-9a-fA-F])+"
_Binnumber = r"0[bB](?:_?[01])+"
_Octnumber = r"0[oO](?:_?[0-7])+"
_Decnumber = r"(?:0(?:_?0)*|[1-9](?:_?[0-9])*)"
_Intnumber = _group(_Hexnumber, _Binnumber, _Octnumber, _Decnumber)
_Exponent = r"[eE][-+]?[0-9](?:_?[0-9])*"
_Pointfloat = _group(r"[0-9](?:_?[0-9])*\.(?:[0-9](?:_?[0-9])*)?", r"\.[0-9](?:_?[0-9])*") + "(" + _Exponent + ")?"
_Expfloat = r"[0-9](?:_?[0-9])*" + _Exponent
_Floatnumber = _group(_Pointfloat, _Expfloat)
_Imagnumber = _group(r"[0-9](?:_?[0-9])*[jJ]", _Floatnumber + r"[jJ]")
_Number = _group(_Imagnumber, _Floatnumber, _Intnumber)
_StringPrefix = r"(?:[rR][bBfF]?|[bB][rR]?|[fF][rR]?|[uU])?"   # the prefixes in _PREFIXES, compiled fast
_Single = r"[^'\\]*(?:\\.[^'\\]*)*'"
_Double = r'[^"\\]*(?:\\.[^"\\]*)*"'
_Single3 = r"[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''"
_Double3 = r'[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""'
_Triple = _group(_StringPrefix + "'''", _StringPrefix + '"""')
_Special = _group(*map(re.escape, sorted(OPERATORS, reverse=True)))
_Funny = _group(r"\r?\n", _Special)
_ContStr = _group(_StringPrefix + r"'[^\n'\\]*(?:\\.[^\n'\\]*)*" + _group("'", r"\\\r?\n"),
                  _StringPrefix + r'"[^\n"\\]*(?:\\.[^\n"\\]*)*' + _group('"', r"\\\r?\n"))
_PseudoExtras = _group(r"\\\r?\n|\Z", _Comment, _Triple)
_PseudoToken = _Whitespace + _group(_PseudoExtras, _Number, _Funny, _ContStr, _Name)

_PSEUDO = re.compile(_PseudoToken, re.UNICODE)
_BLANKS = re.compile(_Whitespace)
_ENDPATS: dict[str, re.Pattern[str]] = {}
for _p in _PREFIXES:
    _ENDPATS[_p + "'"] = re.compile(_Single)
    _ENDPATS[_p + '"'] = re.compile(_Double)
    _ENDPATS[_p + "'''"] = re.compile(_Single3)
    _ENDPATS[_p + '"""'] = re.compile(_Double3)
_SINGLE_QUOTED = frozenset(p + q for p in _PREFIXES for q in ("'", '"'))
_TRIPLE_QUOTED = frozenset(p + q for p in _PREFIXES for q in ("'''", '"""'))
_LOWER_PREFIXES = frozenset(p.lower() for p in _PREFIXES if p)
_BADSTR = re.compile(r"(?i:[bruf]{0,2})['\"]")
_TABSIZE = 8


def _lines(source: str) -> list[str]:
    """Physical lines as ``io.StringIO(source).readline`` returns them (split at '\\n' only)."""
    parts = source.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def lex(source: str) -> list[Tok]:
    """Tokens of ``source`` to its end, never raising: equal to ``tokenize.generate_tokens`` (3.11)
    where that succeeds, recovering as the module docstring says where it would fail."""
    out: list[Tok] = []
    emit = out.append
    T = Tok
    pseudo = _PSEUDO.match
    numchars = "0123456789"
    single_quoted = _SINGLE_QUOTED
    triple_quoted = _TRIPLE_QUOTED
    lines = _lines(source)
    nlines = len(lines)

    lnum = parenlev = 0
    continued = False
    contstr = ""
    needcont = False
    contline = ""
    strstart = (0, 0)
    endprog: re.Pattern[str] | None = None
    indents = [0]
    last_line = ""
    line = ""
    unfinished = False                             # EOF came inside a string or a statement
    while True:                                    # loop over lines
        last_line = line
        line = lines[lnum] if lnum < nlines else ""
        lnum += 1
        pos, maxpos = 0, len(line)

        if contstr:                                # continued string
            if not line:                           # EOF inside it: the rest is one bad string
                emit(T("ERRORTOKEN", contstr, strstart, (lnum - 1, len(last_line)), contline))
                contstr = ""
                unfinished = True
                break
            assert endprog is not None
            endmatch = endprog.match(line)
            if endmatch:
                pos = end = endmatch.end(0)
                emit(T("STRING", contstr + line[:end], strstart, (lnum, end), contline + line))
                contstr, needcont = "", False
                contline = ""
            elif needcont and line[-2:] != "\\\n" and line[-3:] != "\\\r\n":
                emit(T("ERRORTOKEN", contstr + line, strstart, (lnum, len(line)), contline))
                contstr = ""
                contline = ""
                continue
            else:
                contstr = contstr + line
                contline = contline + line
                continue

        elif parenlev == 0 and not continued:      # new statement
            if not line:
                break
            column = 0
            while pos < maxpos:                    # measure leading whitespace
                c = line[pos]
                if c == " ":
                    column += 1
                elif c == "\t":
                    column = (column // _TABSIZE + 1) * _TABSIZE
                elif c == "\f":
                    column = 0
                else:
                    break
                pos += 1
            if pos == maxpos:
                break

            if line[pos] in "#\r\n":               # comments and blank lines
                if line[pos] == "#":
                    comment = line[pos:].rstrip("\r\n")
                    emit(T("COMMENT", comment, (lnum, pos), (lnum, pos + len(comment)), line))
                    pos += len(comment)
                emit(T("NL", line[pos:], (lnum, pos), (lnum, len(line)), line))
                continue

            if column > indents[-1]:
                indents.append(column)
                emit(T("INDENT", line[:pos], (lnum, 0), (lnum, pos), line))
            while column < indents[-1]:
                indents.pop()
                emit(T("DEDENT", "", (lnum, pos), (lnum, pos), line))
                if column > indents[-1]:           # matches no outer level: open one here
                    indents.append(column)
                    emit(T("INDENT", line[:pos], (lnum, 0), (lnum, pos), line))

        else:                                      # continued statement
            if not line:                           # EOF inside brackets or after a backslash
                unfinished = True
                break
            continued = False

        while pos < maxpos:
            pseudomatch = pseudo(line, pos)
            if pseudomatch:
                start, end = pseudomatch.span(1)
                if start == end:                   # \Z: only blanks were left
                    pos = end
                    continue
                spos, epos, pos = (lnum, start), (lnum, end), end
                token = line[start:end]
                initial = token[0]

                if initial in numchars or (initial == "." and token != "." and token != "..."):
                    emit(T("NUMBER", token, spos, epos, line))
                elif initial in "\r\n":
                    emit(T("NL" if parenlev > 0 else "NEWLINE", token, spos, epos, line))
                elif initial == "#":
                    emit(T("COMMENT", token, spos, epos, line))
                elif token in triple_quoted:
                    endprog = _ENDPATS[token]
                    endmatch = endprog.match(line, pos)
                    if endmatch:                   # all on one line
                        pos = endmatch.end(0)
                        emit(T("STRING", line[start:pos], spos, (lnum, pos), line))
                    else:                          # multiple lines
                        strstart = (lnum, start)
                        contstr = line[start:]
                        contline = line
                        break
                elif initial in single_quoted or token[:2] in single_quoted or token[:3] in single_quoted:
                    if token[-1] == "\n":          # continued string
                        strstart = (lnum, start)
                        endprog = (_ENDPATS.get(initial) or _ENDPATS.get(token[1])
                                   or _ENDPATS.get(token[2]))
                        contstr, needcont = line[start:], True
                        contline = line
                        break
                    emit(T("STRING", token, spos, epos, line))
                elif initial.isidentifier():
                    nxt = line[end:end + 1]
                    if (nxt == "'" or nxt == '"') and token.lower() in _LOWER_PREFIXES:
                        pos = _bad_string(line, lnum, start, emit)   # f'... unterminated
                    else:
                        emit(T("NAME", token, spos, epos, line))
                elif initial == "\\":
                    continued = True
                else:
                    if initial in "([{":
                        parenlev += 1
                    elif initial in ")]}":
                        parenlev = parenlev - 1 if parenlev > 0 else 0
                    emit(T("OP", token, spos, epos, line))
            else:
                pos = _BLANKS.match(line, pos).end()
                if pos >= maxpos:
                    break
                c = line[pos]
                if c == "'" or c == '"':           # an unterminated string
                    pos = _bad_string(line, lnum, pos, emit)
                else:
                    emit(T("ERRORTOKEN", c, (lnum, pos), (lnum, pos + 1), line))
                    pos += 1

    if unfinished:                                 # the statement never ended: end it here
        n = len(lines)
        col = len(lines[-1].rstrip("\r\n"))
        if not out or out[-1].kind != "NEWLINE":
            emit(T("NEWLINE", "", (n, col), (n, col + 1), ""))
    elif last_line and last_line[-1] not in "\r\n" and not last_line.strip().startswith("#"):
        emit(T("NEWLINE", "", (lnum - 1, len(last_line)), (lnum - 1, len(last_line) + 1), ""))
    for _ in indents[1:]:                          # pop remaining indent levels
        emit(T("DEDENT", "", (lnum, 0), (lnum, 0), ""))
    emit(T("ENDMARKER", "", (lnum, 0), (lnum, 0), ""))
    return out


def _bad_string(line: str, lnum: int, start: int, emit) -> int:  # type: ignore[no-untyped-def]
    """Emit an unterminated string from ``start`` to the end of its line (newline excluded)."""
    stop = len(line.rstrip("\r\n"))
    emit(Tok("ERRORTOKEN", line[start:stop], (lnum, start), (lnum, stop), line))
    return stop
