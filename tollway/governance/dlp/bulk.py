"""Checks over many digit windows at once, in C: Luhn, card brands and phone prefixes by byte tables and big integers.

A page of card numbers has about 50 digit runs per KB, each with a card window and several phone
windows, and almost none of them is a finding. Checked one by one, each window is a chain of Python
calls (a microsecond or more); here the runs of one shape are laid end to end as digit values (one
``bytes`` object, ``stride`` digits per run) and each check runs over all of them with a few C-level
operations: strided slices pick a digit of every run, ``int.from_bytes`` adds or scales whole byte
strings at once (SWAR: every byte stays below 256, so no carry crosses into the next byte), and
``bytes.translate`` turns each byte into a verdict. The answers are necessary conditions: a run that
fails all of its windows has no finding, the others go through the exact per-run check (``numbers``).
tests/test_dlp_validators.py compares them with the per-window checks on random runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress

VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
# A digit value (0..9) to the digit sum of its double (Luhn's doubled digits).
_DOUBLED_VALUE = bytes((2 * d if d < 5 else 2 * d - 9) if d < 10 else 0 for d in range(256))
_MOD10 = bytes(1 if v % 10 == 0 else 0 for v in range(256))
NOT_DIGITS = b"+(). -/"  # what a digit run holds besides digits (the candidate regex's class, and a lead)


def column(values: bytes, stride: int, offset: int, count: int) -> bytes:
    """Digit ``offset`` of each of the ``count`` runs in ``values`` (``stride`` digits per run)."""
    return values[offset::stride][:count]


def windows(values: bytes, stride: int, offset: int, width: int, count: int) -> bytes:
    """Digits ``offset`` to ``offset + width`` of every run, laid end to end (``width`` per run)."""
    if offset == 0 and width == stride:
        return values
    out = bytearray(width * count)
    for j in range(width):
        out[j::width] = values[offset + j::stride][:count]
    return bytes(out)


def luhn_flags(values: bytes, width: int, count: int) -> bytes:
    """One byte per window (``width`` digit values each, end to end): 1 when it passes Luhn, else 0.

    From the right, every second digit is replaced by the digit sum of its double (strided slice
    assignments); then the ``width`` bytes of each window are added up with shifted copies of the whole
    string as one integer (sums of 1, 2, 4, 8, 16 consecutive bytes, combined by the binary digits of
    ``width``); every byte stays at most 9 * 19 = 171, so no carry crosses a byte; each window's total
    is the byte at its start."""
    mixed = bytearray(values)
    doubled = values.translate(_DOUBLED_VALUE)
    for j in range(width - 2, -1, -2):  # the second digit from the right, the fourth...
        mixed[j::width] = doubled[j::width]
    sums = {1: int.from_bytes(mixed, "little")}
    size = 1
    while size * 2 <= width:
        sums[size * 2] = sums[size] + (sums[size] >> (8 * size))
        size *= 2
    total = 0
    offset = 0
    for size in (16, 8, 4, 2, 1):
        if width & size:
            total += sums[size] >> (8 * offset)
            offset += size
    return total.to_bytes(width * count, "little")[::width].translate(_MOD10)


def pair_codes(values: bytes, stride: int, offset: int, count: int) -> bytes:
    """Per run, its two digits from ``offset`` as one byte, ``10 * first + second`` (0..99)."""
    first = int.from_bytes(column(values, stride, offset, count), "little")
    second = int.from_bytes(column(values, stride, offset + 1, count), "little")
    return (first * 10 + second).to_bytes(count, "little")


def pair_table(prefixes: Iterable[str]) -> bytes:
    """A ``translate`` table: byte ``10 * a + b`` is 1 when some prefix starts with the digits ``a``, ``b``."""
    table = bytearray(256)
    for p in prefixes:
        table[int(p[:2])] = 1
    return bytes(table)


def indices(flags: bytes) -> list[int]:
    """The positions of the non-zero bytes of ``flags``."""
    return list(compress(range(len(flags)), flags))


def union(flags: list[bytes], count: int) -> bytes:
    """Byte-wise OR of equally long 0/1 flag strings."""
    total = 0
    for f in flags:
        total |= int.from_bytes(f, "little")
    return total.to_bytes(count, "little")


def both(a: bytes, b: bytes, count: int) -> bytes:
    """Byte-wise AND of two 0/1 flag strings."""
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(count, "little")
