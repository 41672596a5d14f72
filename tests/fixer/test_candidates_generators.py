"""The repairs the bench's one-edit misses asked for: an opener lost right before its closer or
inside another bracket, an opener lost before a run of indented arguments (or mid-line above
them), a signature's ')' lost before ``->`` or ``:``, a ']' lost inside multi-line arguments, a
keyword argument's '=' doubled lines before the call's end that CPython names, a keyword
misspelled just past the range CPython names or anywhere in the statement it spans, a quote
put back on the word's side of a blank, and an opening quote lost before punctuation after '=';
slips of other languages (``x++``), of Python 2 (``0755``, ``exec 'code'``) and a keyword
used as a name (``class = ...`` then ``print(class)``: ``class_`` both times); a string's own
quote used inside it (``'Bob's book'``); and a keyword typed twice or run into the next name
(``defdef``, ``forx in xs``).

The oracle is the original text (the same token sequence, :func:`same_program`) and ``compile``:
each broken text must come back as the original with the n-gram ranking (deterministic, no
artifact), the original must be among the candidates with the reranker too, and every candidate
must compile. Each case was missed outright before its generator existed.
"""

from __future__ import annotations

import warnings

import pytest

from noodle.fixer import fix
from noodle.fixer.corrupt import same_program
from noodle.fixer.strings import _blank_edged

CASES = {
    "empty pair after '='": ("def f():\n    deps = ]\n    return deps\n",
                             "def f():\n    deps = []\n    return deps\n"),
    "empty call": ("class A:\n    def m(self):\n        self.d = self.prepare)\n        return self.d\n",
                   "class A:\n    def m(self):\n        self.d = self.prepare()\n        return self.d\n"),
    "opener inside a call": ("def g(obj, ok):\n    return fields(type obj)) if ok else []\n",
                             "def g(obj, ok):\n    return fields(type(obj)) if ok else []\n"),
    "opener before indented arguments": (
        "def f(x):\n    warnings.warn\n        'a long message '\n        'that goes on '\n        'and on.',\n"
        "        DeprecationWarning, stacklevel=2)\n    return x\n",
        "def f(x):\n    warnings.warn(\n        'a long message '\n        'that goes on '\n        'and on.',\n"
        "        DeprecationWarning, stacklevel=2)\n    return x\n"),
    "opener lost mid-line before indented arguments": (
        "class D(E):\n    def __init__(self, stream, width=None):\n        E.__init__ self, stream,\n"
        "                width=width,\n                canonical=None,\n                indent=4)\n"
        "        self.ready = True\n",
        "class D(E):\n    def __init__(self, stream, width=None):\n        E.__init__(self, stream,\n"
        "                width=width,\n                canonical=None,\n                indent=4)\n"
        "        self.ready = True\n"),
    "signature closer before '->'": (
        "def verify(\n    self,\n    data: bytes,\n -> None:\n    return None\n",
        "def verify(\n    self,\n    data: bytes,\n) -> None:\n    return None\n"),
    "signature closer before ':'": (
        "class T:\n    def __init__(\n        self,\n        key: bytes,\n        strict: bool = True,\n    :\n"
        "        self.key = key\n",
        "class T:\n    def __init__(\n        self,\n        key: bytes,\n        strict: bool = True,\n    ):\n"
        "        self.key = key\n"),
    "'==' for a keyword argument's '='": (
        "def g(d, a, b):\n    return d(\n        start=a,\n        stop==b,\n        size=b - a,\n        single=False\n"
        "    )\n",
        "def g(d, a, b):\n    return d(\n        start=a,\n        stop=b,\n        size=b - a,\n        single=False\n"
        "    )\n"),
    "']' inside multi-line arguments": (
        "def f(\n    self,\n    style: Optional[Style = None,\n    mode: bool = False,\n) -> None:\n"
        "    self.style = style\n",
        "def f(\n    self,\n    style: Optional[Style] = None,\n    mode: bool = False,\n) -> None:\n"
        "    self.style = style\n"),
    "keyword just past the named range": (
        "def f(args):\n    return tuple(\n        bytes(arg) if isinstance(arg, (bytearray, memoryview)) lese arg\n"
        "        for arg in args\n    )\n",
        "def f(args):\n    return tuple(\n        bytes(arg) if isinstance(arg, (bytearray, memoryview)) else arg\n"
        "        for arg in args\n    )\n"),
    "quote lost before punctuation after '='": (
        "def svg(w, h):\n    header = <svg width=\"{}\" height=\"{}\">\\n'.format(\n        w, h)\n    return header\n",
        "def svg(w, h):\n    header = '<svg width=\"{}\" height=\"{}\">\\n'.format(\n        w, h)\n    return header\n"),
    "keyword misspelt late in a multi-line condition": (
        "def f(expr, q):\n    if (not expr.is_square or\n            ask(q.invertible(expr), expr.kind) Is False):\n"
        "        return False\n    return True\n",
        "def f(expr, q):\n    if (not expr.is_square or\n            ask(q.invertible(expr), expr.kind) is False):\n"
        "        return False\n    return True\n"),
    "quote on the word's side of a blank": (
        'def w(ttype, value):\n    line = b"%r\\t%r\\n % (ttype, value)\n    return line\n',
        'def w(ttype, value):\n    line = b"%r\\t%r\\n" % (ttype, value)\n    return line\n'),
    # slips of other languages and of Python 2, each one mistake
    "Python 2's octal literal": ("import os\n\ndef f(p):\n    os.chmod(p, 0755)\n",
                                 "import os\n\ndef f(p):\n    os.chmod(p, 0o755)\n"),
    "Python 2's octal literal after another number": ("def f(p):\n    return g(0, 0777)\n",
                                                      "def f(p):\n    return g(0, 0o777)\n"),
    "Python 2's exec with a namespace": ("def run(code, g, l):\n    exec code in g, l\n    return g\n",
                                         "def run(code, g, l):\n    exec(code, g, l)\n    return g\n"),
    "an apostrophe after an if-expression's string on the line": (
        "def f(c):\n    x = 'a'if c else 'b'; y = 'it's'\n    return x, y\n",
        "def f(c):\n    x = 'a'if c else 'b'; y = \"it's\"\n    return x, y\n"),
    "C's x++": ("def f(n):\n    i = 0\n    while i < n:\n        i++\n    return i\n",
                "def f(n):\n    i = 0\n    while i < n:\n        i += 1\n    return i\n"),
    "C's x-- at the end of a one-line block": ("def f(n):\n    for _ in range(3): n--\n    return n\n",
                                              "def f(n):\n    for _ in range(3): n -= 1\n    return n\n"),
    "Python 2's exec statement": ("def run(code):\n    exec 'x = 1'\n    return code\n",
                                  "def run(code):\n    exec('x = 1')\n    return code\n"),
    "a keyword as a variable, assigned then read": ("def f(k):\n    class = k.kind\n    return print(class)\n",
                                                    "def f(k):\n    class_ = k.kind\n    return print(class_)\n"),
    "a keyword as a parameter, then returned": ("def f(in, out):\n    out.write(in)\n    return in\n",
                                                "def f(in_, out):\n    out.write(in_)\n    return in_\n"),
    "an apostrophe inside a single-quoted string": ("def f():\n    print('don't do it')\n    return 'Bob's book'\n",
                                                    "def f():\n    print(\"don't do it\")\n    return \"Bob's book\"\n"),
    "quotes inside a double-quoted string": ('def f():\n    msg = "he said "hi" there"\n    return msg\n',
                                             "def f():\n    msg = 'he said \"hi\" there'\n    return msg\n"),
    "an apostrophe in each string of a list": ("names = ['Bob's', 'Ann's', 'Joe's']\n",
                                               'names = ["Bob\'s", "Ann\'s", "Joe\'s"]\n'),
    "a keyword typed twice": ("defdef read(fp):\n    return fp.read()\n", "def read(fp):\n    return fp.read()\n"),
    "a keyword run into the name after it": ("classFoo:\n    def m(self, xs):\n        forx in xs:\n            print(x)\n",
                                             "class Foo:\n    def m(self, xs):\n        for x in xs:\n            print(x)\n"),
    "a keyword run into its condition": ("def f(x):\n    ifx > 0:\n        return x\n    return -x\n",
                                         "def f(x):\n    if x > 0:\n        return x\n    return -x\n"),
    "a keyword as an attribute": ("def f(msg):\n    return msg.from.lower()\n",
                                  "def f(msg):\n    return msg.from_.lower()\n"),
}


def _compiles(text: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(text, "<test>", "exec", dont_inherit=True)
        except SyntaxError:
            return False
    return True


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_original_comes_back_first_with_the_ngram(name):
    broken, original = CASES[name]
    assert not _compiles(broken) and _compiles(original)
    r = fix(broken, k=10, rerank=False)
    assert r.changed, f"{name}: not repaired ({r.notes})"
    assert all(_compiles(c.source) for c in r.candidates)
    assert same_program(r.source, original), f"{name}: {r.source!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_original_is_a_candidate_with_the_reranker(name):
    broken, original = CASES[name]
    r = fix(broken, k=10)
    assert all(_compiles(c.source) for c in r.candidates)
    assert any(same_program(c.source, original) for c in r.candidates), \
        f"{name}: {[c.source for c in r.candidates]}"


@pytest.mark.parametrize("row, col, edged", [
    ('x = "Gather or y\n', 11, False),       # "Gather" or y: the blank stays code
    ('x = "Gather or y\n', 12, True),        # "Gather "or y: the string ends in the blank
    ('print(hello world")\n', 6, False),     # an opening quote before a word
    ('x = a + b"\n', 7, True),               # +" b": the string starts with the blank
    ('s = "abc def\n', 12, False),           # "abc" def: no blank inside
])
def test_a_quote_on_the_blank_side_of_a_string_is_flagged(row, col, edged):
    assert _blank_edged(row, col, '"') is edged


def test_an_opener_lost_first_inside_a_long_call_is_a_candidate():
    """``m(a.f(x), a.f(y), ... d.f(y)])`` lost the '[' right after '(': the mismatch repairs
    offered the wrong-kind opener only at the 24 spots nearest the closer, so on a long line the
    first spot inside, where a list argument starts, was never tried."""
    args = ", ".join(f"e{i}.expand().coeff({v})" for i in range(1, 4) for v in "xy")
    original = f"def f(e1, e2, e3, x, y):\n    return M([{args}]).reshape(2, 3)\n"
    broken = original.replace("M([", "M(", 1)
    r = fix(broken, k=10)
    assert all(_compiles(c.source) for c in r.candidates)
    assert any(same_program(c.source, original) for c in r.candidates), [c.edits for c in r.candidates]


def test_a_repair_leaves_no_search_context_alive():
    """A generator's caches must not hold the search's contexts (each holds the text's lines and
    tokens): a cache decorator that slipped onto the keyword-argument generator kept up to 4,096
    of them, one per repair, for the life of the process."""
    import gc

    from noodle.fixer.context import Context

    broken, original = CASES["'==' for a keyword argument's '='"]
    r = fix(broken, k=3, rerank=False)
    assert same_program(r.source, original)
    gc.collect()
    # type(), not isinstance(): the heap can hold a weakref proxy to a dead object, and
    # isinstance() on one raises ReferenceError (it asks the proxy for __class__).
    alive = [o for o in gc.get_objects() if issubclass(type(o), Context)]
    assert not alive, f"{len(alive)} search context(s) still referenced after fix() returned"
