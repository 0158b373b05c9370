"""The value classes as Python values: ``__replace__`` (``copy.replace``
on 3.13), ``SidecarKey.created_at``, and the stable codes of
``SidecarError`` (``SIDECAR_PROBLEM_CODES``)."""

import datetime
import json
import typing
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier import exceptions
from encryption_applier.testing import temporary_kek

REG = ea.Registration(7, 0xABCD_0001, 3)
BOOT = ea.Bootstrap(1, b"w" * 60, 2, b"v" * 60, [ea.Registration(1, 0x1, 1)])
ROT = ea.Rotation(3, ea.Purpose.STORAGE, b"x" * 60, ea.Registration(3, 0xA, 4))
ROW = ea.RegistryRow(1, 0x0001, 0xABCD_0001, 2, 5)

# (object, changes, what a fresh constructor call with those fields builds)
REPLACED = [
    (REG, {"local_epoch": 9}, ea.Registration(7, 0xABCD_0001, 9)),
    (REG, {"dek_id": 8, "full_node_id": 0xB}, ea.Registration(8, 0xB, 3)),
    (REG, {}, ea.Registration(7, 0xABCD_0001, 3)),
    (BOOT, {"raft_dek_id": 5}, ea.Bootstrap(1, b"w" * 60, 5, b"v" * 60, [ea.Registration(1, 0x1, 1)])),
    (BOOT, {"batch_registry": []}, ea.Bootstrap(1, b"w" * 60, 2, b"v" * 60)),
    (
        ROT,
        {"sub_tag": ea.ENABLE_STORAGE_ENVELOPE, "wrapped": b""},
        ea.Rotation(3, 1, b"", ea.Registration(3, 0xA, 4), sub_tag=ea.ENABLE_STORAGE_ENVELOPE),
    ),
    (ROT, {"purpose": ea.Purpose.RAFT}, ea.Rotation(3, 2, b"x" * 60, ea.Registration(3, 0xA, 4))),
    (ROW, {"last_seen_local_epoch": 6}, ea.RegistryRow(1, 1, 0xABCD_0001, 2, 6)),
]


@pytest.mark.parametrize(("obj", "changes", "expected"), REPLACED, ids=lambda v: type(v).__name__)
def test_replace_is_a_fresh_construction(obj: object, changes: dict[str, object], expected: object) -> None:
    got = obj.__replace__(**changes)  # type: ignore[attr-defined]
    assert got == expected and type(got) is type(obj)
    assert got is not obj
    assert hash(got) == hash(expected)
    if hasattr(got, "encode"):
        assert got.encode() == expected.encode()  # type: ignore[attr-defined]
    assert obj != got or not changes  # the original is untouched


@pytest.mark.parametrize(
    ("obj", "name"),
    [(REG, "node_id16"), (REG, "epoch"), (BOOT, "batch"), (ROT, "proposer"), (ROW, "key")],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_replace_names_an_unknown_field(obj: object, name: str) -> None:
    with pytest.raises(TypeError, match=rf"{type(obj).__name__}\.__replace__\(\) got an unknown field {name};"):
        obj.__replace__(**{name: 1})  # type: ignore[attr-defined]


def test_replace_checks_the_new_fields_as_the_constructor_does() -> None:
    with pytest.raises(OverflowError):
        REG.__replace__(local_epoch=1 << 16)
    with pytest.raises(ValueError, match="not a valid registry row"):
        ROW.__replace__(first_seen_local_epoch=9)  # first > last
    with pytest.raises(TypeError):
        BOOT.__replace__(batch_registry=[1])
    with pytest.raises(TypeError, match="unknown fields a, b;"):
        REG.__replace__(a=1, b=2)


def sidecar_with_created(tmp_path: Path, created: str) -> ea.SidecarKey:
    """keys.json as Go writes it, with one key's ``created`` text given."""
    with temporary_kek() as kek, ea.Applier(tmp_path / "r", kek=kek) as applier:
        applier.apply(ea.Bootstrap(1, kek.wrap(b"k" * 32), 2, kek.wrap(b"r" * 32)))
    path = tmp_path / "r" / "keys.json"
    doc = json.loads(path.read_text())
    doc["keys"]["1"]["created"] = created
    path.write_text(json.dumps(doc))
    sidecar = ea.read_sidecar(path)
    assert sidecar is not None
    return sidecar.keys[1]


UTC = datetime.UTC


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        # Go's time.RFC3339 of a UTC time: what elastickv writes.
        ("2026-05-16T17:53:00Z", datetime.datetime(2026, 5, 16, 17, 53, 0, tzinfo=UTC)),
        ("2000-02-29T00:00:00Z", datetime.datetime(2000, 2, 29, tzinfo=UTC)),
        # RFC3339Nano, and other offsets: the fraction cut to microseconds.
        ("2026-05-16T17:53:00.123456789Z", datetime.datetime(2026, 5, 16, 17, 53, 0, 123456, tzinfo=UTC)),
        (
            "2026-05-16t17:53:00.5+09:30",
            datetime.datetime(
                2026, 5, 16, 17, 53, 0, 500000, tzinfo=datetime.timezone(datetime.timedelta(hours=9, minutes=30))
            ),
        ),
        (
            "2026-05-16T17:53:00-01:00",
            datetime.datetime(2026, 5, 16, 17, 53, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-1))),
        ),
        # The shape is RFC 3339's but no instant is named: read, and None.
        ("2026-02-29T00:00:00Z", None),
        ("2026-04-31T00:00:00Z", None),
        ("2016-12-31T23:59:60Z", None),
        ("0000-01-01T00:00:00Z", None),
    ],
)
def test_created_at(tmp_path: Path, created: str, expected: datetime.datetime | None) -> None:
    key = sidecar_with_created(tmp_path, created)
    assert key.created == created  # the text as written, kept for byte-exact rewrites
    assert key.created_at == expected
    if expected is not None:
        assert key.created_at is not None and key.created_at.utcoffset() == expected.utcoffset()


def test_created_at_of_a_fresh_key_is_now_in_utc(tmp_path: Path) -> None:
    before = datetime.datetime.now(UTC).replace(microsecond=0)
    with temporary_kek() as kek, ea.Applier(tmp_path / "r", kek=kek) as applier:
        applier.apply(ea.Bootstrap(1, kek.wrap(b"k" * 32), 2, kek.wrap(b"r" * 32)))
        sidecar = applier.sidecar
    after = datetime.datetime.now(UTC)
    assert sidecar is not None
    for key in sidecar.keys.values():
        assert key.created_at is not None and key.created_at.tzinfo is not None
        assert key.created_at.utcoffset() == datetime.timedelta(0)
        assert before <= key.created_at <= after


def test_sidecar_problem_codes_are_the_literal_of_sidecar_error_code() -> None:
    codes = ea.SIDECAR_PROBLEM_CODES
    assert isinstance(codes, tuple) and len(codes) == len(set(codes)) == 20
    assert codes == typing.get_args(exceptions.SidecarProblem)
    # The codes SidecarError's docstring names, in its order.
    doc = ea.SidecarError.__doc__ or ""
    assert all(f"``{code}``" in doc for code in codes)


def test_a_raised_sidecar_error_code_is_one_of_them(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(ea.SidecarError) as raised:
        ea.read_sidecar(path)
    assert raised.value.code == "not_json" and raised.value.code in ea.SIDECAR_PROBLEM_CODES
