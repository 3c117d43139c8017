"""Property tests: Range resolution and precondition evaluation against RFC 9110's rules.

Each property restates a rule of RFC 9110 (§13.1, §13.2.2, §14.1.2) in its own
words and lets Hypothesis look for an input where the implementation differs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from callfs_core.conditions import evaluate_preconditions, resolve_range
from callfs_core.errors import NotModified, PreconditionFailed, RangeNotSatisfiable
from callfs_core.model import Inode, Kind, Preconditions
from callfs_core.paths import FsPath

BASE = datetime(2026, 1, 1, tzinfo=UTC)
HEX = "0123456789abcdef"

sizes = st.integers(min_value=0, max_value=10_000)
positions = st.integers(min_value=0, max_value=20_000)
digests = st.text(alphabet=HEX, min_size=64, max_size=64)
seconds = st.integers(min_value=-100_000, max_value=100_000)


def file(size: int = 100, sha: str = "a" * 64, mtime: datetime = BASE) -> Inode:
    return Inode(
        FsPath.parse("/f"), Kind.FILE, "o", "o", 0o644, mtime, mtime, size=size, sha256=sha
    )


def outcome(pre: Preconditions, inode: Inode | None, safe: bool) -> str:
    try:
        evaluate_preconditions(pre, "/f", inode, safe_method=safe)
    except PreconditionFailed:
        return "412"
    except NotModified:
        return "304"
    return "pass"


# -- ranges (RFC 9110 §14.1.2, §14.4) -------------------------------------------
@given(size=sizes, first=positions, last=positions)
def test_closed_range(size: int, first: int, last: int) -> None:
    header = f"bytes={first}-{last}"
    if size == 0 or last < first:
        assert resolve_range(header, None, file(size)) is None  # ignored
        return
    if first >= size:
        try:
            resolve_range(header, None, file(size))
        except RangeNotSatisfiable as exc:
            assert exc.size == size
        else:
            raise AssertionError("an unsatisfiable range was served")
        return
    result = resolve_range(header, None, file(size))
    assert result is not None
    assert (result.start, result.end) == (first, min(last, size - 1))
    assert 1 <= result.length <= size


@given(size=sizes.filter(lambda s: s > 0), suffix=st.integers(min_value=1, max_value=20_000))
def test_suffix_range_is_the_last_bytes(size: int, suffix: int) -> None:
    result = resolve_range(f"bytes=-{suffix}", None, file(size))
    assert result is not None
    assert result.end == size - 1
    assert result.length == min(suffix, size)


@given(size=sizes.filter(lambda s: s > 0), first=positions)
def test_open_range_runs_to_the_end(size: int, first: int) -> None:
    try:
        result = resolve_range(f"bytes={first}-", None, file(size))
    except RangeNotSatisfiable:
        assert first >= size
        return
    assert result is not None and first < size
    assert (result.start, result.end) == (first, size - 1)


@given(
    size=sizes.filter(lambda s: s > 0),
    header=st.one_of(
        st.text(max_size=20),
        st.builds(
            lambda a, b, c, d: f"bytes={a}-{b},{c}-{d}", positions, positions, positions, positions
        ),
        st.builds(lambda a, b: f"items={a}-{b}", positions, positions),
    ),
)
def test_anything_else_is_ignored_or_a_single_valid_range(size: int, header: str) -> None:
    try:
        result = resolve_range(header, None, file(size))
    except RangeNotSatisfiable:
        return
    if result is not None:
        assert 0 <= result.start <= result.end < size
        assert header.strip().startswith("bytes=") and "," not in header


@given(size=sizes.filter(lambda s: s > 0), sha=digests, other=digests, delta=seconds)
def test_if_range(size: int, sha: str, other: str, delta: int) -> None:
    inode = file(size, sha)
    assert resolve_range("bytes=0-0", f'"{sha}"', inode) is not None
    if other != sha:
        assert resolve_range("bytes=0-0", f'"{other}"', inode) is None
    assert resolve_range("bytes=0-0", f'W/"{sha}"', inode) is None  # weak tags never match
    date = BASE + timedelta(seconds=delta)
    assert (resolve_range("bytes=0-0", date, inode) is not None) == (delta == 0)


# -- preconditions (RFC 9110 §13.2.2) ---------------------------------------------
tag_lists = st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=3)


def tags(names: list[str], weak: bool = False) -> tuple[str, ...]:
    prefix = "W/" if weak else ""
    return tuple(f'{prefix}"{name.lower() * 64}"' for name in names)


@given(
    current=st.sampled_from(["A", "B", None]),
    if_match=st.one_of(st.none(), st.just(["*"]), tag_lists),
    if_none_match=st.one_of(st.none(), st.just(["*"]), tag_lists),
    weak_none_match=st.booleans(),
    ius=st.one_of(st.none(), seconds),
    ims=st.one_of(st.none(), seconds),
    mtime=seconds,
    safe=st.booleans(),
)
def test_precondition_order(
    current: str | None,
    if_match: list[str] | None,
    if_none_match: list[str] | None,
    weak_none_match: bool,
    ius: int | None,
    ims: int | None,
    mtime: int,
    safe: bool,
) -> None:
    modified = BASE + timedelta(seconds=mtime)
    inode = None if current is None else file(sha=(current * 64).lower(), mtime=modified)
    etag = None if current is None else f'"{current * 64}"'.lower()
    pre = Preconditions(
        if_match=None if if_match is None else ("*",) if if_match == ["*"] else tags(if_match),
        if_none_match=None
        if if_none_match is None
        else ("*",)
        if if_none_match == ["*"]
        else tags(if_none_match, weak_none_match),
        if_unmodified_since=None if ius is None else BASE + timedelta(seconds=ius),
        if_modified_since=None if ims is None else BASE + timedelta(seconds=ims),
    )

    # The rules, step by step, as RFC 9110 §13.2.2 states them.
    def expected() -> str:
        if pre.if_match is not None:
            if inode is None:
                return "412"
            if pre.if_match != ("*",) and etag not in pre.if_match:  # strong comparison
                return "412"
        elif ius is not None and inode is not None and mtime > ius:
            return "412"
        if pre.if_none_match is not None:
            bare = [t.removeprefix("W/") for t in pre.if_none_match]  # weak comparison
            hit = inode is not None and (pre.if_none_match == ("*",) or etag in bare)
            if hit:
                return "304" if safe else "412"
        elif safe and ims is not None and inode is not None and mtime <= ims:
            return "304"
        return "pass"

    assert outcome(pre, inode, safe) == expected()
