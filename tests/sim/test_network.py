"""Links between nodes and backends: latency, loss as retransmissions, cuts, partitions."""

from sim.cluster.network import INITIAL_RTO_MS, LinkSpec, Network
from sim.core.rng import Streams


def test_connect_takes_one_round_trip_on_a_clean_link():
    net = Network(Streams(1), LinkSpec(latency_ms=2.5))
    assert net.link("n1", "10.0.0.1:80").connect_ms(60_000) == 5.0


def test_links_are_symmetric_objects():
    net = Network(Streams(1))
    assert net.link("a", "b") is net.link("b", "a")


def test_a_cut_link_never_connects_and_heals():
    net = Network(Streams(1))
    net.cut("n1", "b")
    assert net.link("n1", "b").connect_ms(1000) is None
    net.cut("n1", "b", False)
    assert net.link("n1", "b").connect_ms(1000) == 1.0


def test_loss_costs_retransmission_timeouts_and_can_time_out():
    net = Network(Streams(3), LinkSpec(latency_ms=1.0, loss=0.5))
    link = net.link("n1", "b")
    results = [link.connect_ms(10_000) for _ in range(2000)]
    ok = [r for r in results if r is not None]
    # every successful handshake is one RTT plus whole retransmission timeouts (1s, 2s, 4s ...)
    allowed = {2.0, 2.0 + INITIAL_RTO_MS, 2.0 + 3 * INITIAL_RTO_MS, 2.0 + 7 * INITIAL_RTO_MS}
    assert set(ok) <= allowed
    assert ok.count(2.0) > 800  # about half succeed at once
    assert None in results  # four losses in a row exceed 10 s


def test_partition_cuts_only_links_between_the_two_sides_and_heal_restores_them():
    net = Network(Streams(1))
    for n in ("n1", "n2", "n3"):
        net.register_node(n)
    net.partition(["n1"], ["n2", "n3"])
    assert net.link("n1", "n2").cut and net.link("n1", "n3").cut
    assert not net.link("n2", "n3").cut
    net.heal()
    assert not net.link("n1", "n2").cut and not net.link("n1", "n3").cut


def test_node_links_use_the_node_defaults():
    net = Network(Streams(1), LinkSpec(latency_ms=0.5), LinkSpec(latency_ms=7.0))
    net.register_node("n1")
    net.register_node("n2")
    assert net.link("n1", "n2").one_way_ms == 7.0
    assert net.link("n1", "10.0.0.1:80").one_way_ms == 0.5


def test_transfer_time_includes_bandwidth():
    net = Network(Streams(1), LinkSpec(latency_ms=1.0, bandwidth_bytes_per_ms=1000.0))
    assert net.link("a", "b").transfer_ms(5000) == 6.0
