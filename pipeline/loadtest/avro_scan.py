"""Many framed Avro transactions at once: which are plainly valid, their ids' hashes, their amounts.

The soak's reconciliation reads every message of the run's topic (36 million in an hour at
10,000 tx/s). `soak_reconcile._plain_avro` reads one message field by field in Python; this
reads a whole consumed batch as one byte buffer with numpy, a field at a time for all
messages, and answers the same question for each: is the message plainly valid (schema id 1,
three ids of 1..64 bytes, an amount of 1..7 bytes in (0, MAX_AMOUNT], a timestamp-micros
within the years Python holds, four optional strings, nothing after)?

It only ever says yes when `_plain_avro` would. Any other message (invalid, or one it does
not read: a varint longer than 9 bytes, an id that is not ASCII, an amount of 8 bytes) goes
the one-message way, which asks the contract's validator in turn.
Ids are counted by a 64-bit FNV-1a hash of their UTF-8 bytes (`id_hash` for one id), in both
ways, so the distinct count does not depend on the way a message went.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.contract.avro import HEADER_SIZE, MAGIC, SCHEMA_ID
from pipeline.contract.fields import AMOUNT_SCALE, MAX_AMOUNT, MAX_ID_LENGTH

FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
MAX_CENTS = int(MAX_AMOUNT * 10**AMOUNT_SCALE)
MIN_MICROS, MAX_MICROS = -62_135_596_800 * 10**6, 253_402_300_799 * 10**6   # years 1 .. 9999
VARINT_BYTES = 9          # up to 63 bits: exact in uint64; longer ones are left undecided
OPTIONAL_STRINGS = 4      # currency, merchant_category, country, channel: null | string
PAD = 16


def id_hash(tid: str) -> int:
    """The 64-bit FNV-1a hash of an id's UTF-8 bytes, as a signed 64-bit integer."""
    h = 0xCBF29CE484222325
    for byte in tid.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


@dataclass
class Scanned:
    """One batch: per message whether it is plainly valid, its transaction id's hash and its
    amount in cents (where valid), and where the id lies in `buf`."""

    buf: bytes
    valid: np.ndarray        # bool: False = ask the one-message way
    hashes: np.ndarray       # int64
    cents: np.ndarray        # int64
    id_start: np.ndarray
    id_len: np.ndarray

    def transaction_id(self, i: int) -> str:
        s = int(self.id_start[i])
        return self.buf[s:s + int(self.id_len[i])].decode("ascii")


def _varints(arr: np.ndarray, pos: np.ndarray, ok: np.ndarray, ends: np.ndarray):
    """Avro zig-zag varints at `pos` where `ok`: (values int64, next positions, ok); a varint
    longer than VARINT_BYTES or past its message's end clears ok."""
    ok = ok.copy()
    acc = np.zeros(pos.size, dtype=np.uint64)
    more = ok.copy()
    nxt = pos.copy()
    for k in range(VARINT_BYTES):
        at = pos + k
        ok &= ~more | (at < ends)
        more &= ok
        if not more.any():
            break
        byte = arr[np.where(more, at, 0)].astype(np.uint64)
        acc = np.where(more, acc | ((byte & np.uint64(0x7F)) << np.uint64(7 * k)), acc)
        nxt = np.where(more, at + 1, nxt)
        more &= (byte & np.uint64(0x80)) != 0
    ok &= ~more                                  # still continuing after VARINT_BYTES: ask the other way
    value = (acc >> np.uint64(1)).astype(np.int64) ^ -(acc & np.uint64(1)).astype(np.int64)
    return value, nxt, ok


def _segments(arr: np.ndarray, start: np.ndarray, length: np.ndarray, ok: np.ndarray, want_hash: bool):
    """(all bytes < 0x80, FNV-1a hash or None) of each segment [start, start + length) where ok."""
    width = int(length[ok].max()) if ok.any() else 0
    ascii_ = np.ones(start.size, dtype=bool)
    h = np.full(start.size, FNV_OFFSET, dtype=np.uint64) if want_hash else None
    for j in range(width):
        inside = ok & (j < length)
        byte = arr[np.where(inside, start + j, 0)]
        ascii_ &= ~inside | (byte < 0x80)
        if h is not None:
            h = np.where(inside, (h ^ byte.astype(np.uint64)) * FNV_PRIME, h)
    return ascii_, None if h is None else h.view(np.int64)


def scan(values: list[bytes]) -> Scanned:
    """Pure: read a batch of message values (see the module's text)."""
    n = len(values)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
    buf = b"".join(values)
    arr = np.frombuffer(buf + bytes(PAD), dtype=np.uint8)
    starts = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(lens)[:-1])) if n else lens.copy()
    ends = starts + lens
    ok = lens > HEADER_SIZE
    head = np.where(ok, starts, 0)
    schema = np.zeros(n, dtype=np.int64)
    for k in range(1, HEADER_SIZE):
        schema = (schema << 8) | arr[head + k].astype(np.int64)
    ok &= (arr[head] == MAGIC) & (schema == SCHEMA_ID)

    pos = starts + HEADER_SIZE
    id_start, id_len, hashes = pos, pos, np.zeros(n, dtype=np.int64)
    for field in range(3):                       # transaction_id, person_id, merchant_id
        length, pos, ok = _varints(arr, pos, ok, ends)
        ok &= (length >= 1) & (length <= MAX_ID_LENGTH) & (pos + length <= ends)
        ascii_, h = _segments(arr, pos, length, ok, want_hash=field == 0)
        ok &= ascii_                             # not ASCII: the one-message way decodes it exactly
        if field == 0:
            id_start, id_len, hashes = pos.copy(), length.copy(), h
        pos = np.where(ok, pos + length, pos)

    size, pos, ok = _varints(arr, pos, ok, ends)
    ok &= (size >= 1) & (size <= 7) & (pos + size <= ends)    # 8 bytes: the one-message way
    ok &= arr[np.where(ok, pos, 0)] < 0x80                    # negative (invalid): the other way says so
    cents = np.zeros(n, dtype=np.int64)
    for k in range(7):
        inside = ok & (k < size)
        cents = np.where(inside, (cents << 8) | arr[np.where(inside, pos + k, 0)].astype(np.int64), cents)
    pos = np.where(ok, pos + size, pos)

    micros, pos, ok = _varints(arr, pos, ok, ends)
    ok &= (micros > MIN_MICROS) & (micros < MAX_MICROS)
    for _ in range(OPTIONAL_STRINGS):
        branch, pos, ok = _varints(arr, pos, ok, ends)
        text = ok & (branch == 1)
        length, after, ok_len = _varints(arr, pos, text, ends)
        ok &= (branch == 0) | (branch == 1)
        ok &= ~text | (ok_len & (length >= 0) & (after + length <= ends))
        pos = np.where(text & ok, after + length, pos)
    valid = ok & (pos == ends) & (cents > 0) & (cents <= MAX_CENTS)
    return Scanned(buf, valid, hashes, cents, id_start, id_len)
