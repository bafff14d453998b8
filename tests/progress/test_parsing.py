"""The pure parts: reading a metrics page, and which replica owns which VM."""

from __future__ import annotations

import pytest

from services.populators.common.metrics import Progress
from services.progress.scraping import ScrapeError, parse
from services.progress.sharding import owner


def test_a_populator_page_parses() -> None:
    progress = Progress("ovirt_progress", "uid-1")
    progress.set_total(1000)
    progress.add(250)
    sample = parse(progress.render(), "uid-1")
    assert (sample.percent, sample.bytes_done, sample.bytes_total) == (25.0, 250, 1000)


def test_a_forklift_page_with_percent_only_parses() -> None:
    page = (
        "# TYPE openstack_populator_progress counter\n"
        'openstack_populator_progress{ownerUID="u"} 42\n'
    )
    sample = parse(page, "u")
    assert (sample.percent, sample.bytes_done, sample.bytes_total) == (42.0, None, None)


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ("<html>502 Bad Gateway</html>", "not Prometheus text"),
        ('ovirt_progress{ownerUID="other"} 5\n', "no progress for ownerUID"),
        ('ovirt_progress{ownerUID="u"} NaN\n', "not a count"),
        ('ovirt_progress{ownerUID="u"} -3\n', "not a count"),
        ("", "no progress for ownerUID"),
    ],
)
def test_bad_pages_are_refused_with_a_reason(page: str, reason: str) -> None:
    with pytest.raises(ScrapeError, match=reason):
        parse(page, "u")


def test_rendezvous_moves_only_the_leaver_s_vms() -> None:
    vms = [f"vm-{i}" for i in range(3000)]
    three = {vm: owner(("a", "b", "c"), vm) for vm in vms}
    two = {vm: owner(("a", "c"), vm) for vm in vms}
    moved = [vm for vm in vms if three[vm] != two[vm]]
    assert all(three[vm] == "b" for vm in moved)
    shares = [sum(1 for o in three.values() if o == m) for m in "abc"]
    assert min(shares) > 800  # about a third each
