import numpy as np
import pytest

from ticket_router.sampler import ProportionalTaskBatchSampler, task_shares


def disjoint_labels(counts):
    """A label matrix where each row is labeled for exactly one task (so batch composition = quotas)."""
    rows = []
    for t, n in enumerate(counts):
        for _ in range(n):
            row = [-100] * len(counts)
            row[t] = 0
            rows.append(row)
    return np.array(rows)


def composition(sampler, labels, epochs=range(3)):
    totals = np.zeros(labels.shape[1])
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in sampler:
            totals += (labels[batch] >= 0).sum(axis=0)
    return totals / totals.sum()


def test_shares_follow_counts_and_temperature():
    assert task_shares([600, 300, 100], 1.0) == pytest.approx([0.6, 0.3, 0.1])
    assert task_shares([600, 300, 100], 1000.0) == pytest.approx([1 / 3] * 3, abs=0.01)
    with pytest.raises(ValueError, match="temperature"):
        task_shares([1, 2], 0)


def test_proportions_match_label_counts_statistically():
    counts = [1200, 500, 300]
    labels = disjoint_labels(counts)
    sampler = ProportionalTaskBatchSampler(labels, batch_size=16, temperature=1.0, seed=3)
    observed = composition(sampler, labels)
    # 3 epochs x 125 batches x 16 slots = 6000 draws: a binomial share has sd < 0.007
    assert observed == pytest.approx([0.6, 0.25, 0.15], abs=0.02)


def test_uniform_at_high_temperature_and_rare_task_in_every_batch():
    labels = disjoint_labels([1500, 400, 20])
    sampler = ProportionalTaskBatchSampler(labels, batch_size=12, temperature=50.0, seed=0)
    assert composition(sampler, labels) == pytest.approx([1 / 3] * 3, abs=0.03)
    proportional = ProportionalTaskBatchSampler(labels, batch_size=12, temperature=1.0, seed=0)
    for batch in proportional:
        assert (labels[batch] >= 0).any(axis=0).all(), "every task present in every batch"


def test_deterministic_per_seed_and_epoch_and_no_duplicates():
    labels = np.array([[0, 1 if i % 3 else -100] for i in range(100)])
    a = ProportionalTaskBatchSampler(labels, batch_size=8, seed=5)
    b = ProportionalTaskBatchSampler(labels, batch_size=8, seed=5)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert len(list(a)) == len(a) == 13
    for batch in a:
        assert len(batch) == len(set(batch)) == 8


def test_rows_without_any_label_are_never_drawn():
    labels = np.array([[0, -100], [-100, 1], [-100, -100], [1, 0]] * 10)
    sampler = ProportionalTaskBatchSampler(labels, batch_size=4, seed=0)
    drawn = {row for batch in sampler for row in batch}
    assert not drawn & set(range(2, 40, 4))
    assert len(sampler) == 8  # 30 labeled rows / 4


def test_tiny_batch_never_exceeds_batch_size():
    labels = disjoint_labels([980, 10, 10])
    sampler = ProportionalTaskBatchSampler(labels, batch_size=3, seed=0)
    assert all(len(batch) == 3 for batch in sampler)
    assert all((labels[batch] >= 0).any(axis=0).all() for batch in sampler)  # still every task, one row each


def test_length_grouping_cuts_padding_and_keeps_the_draw():
    rng = np.random.default_rng(0)
    labels = disjoint_labels([300, 200, 100])
    lengths = rng.integers(5, 200, size=len(labels))
    plain = ProportionalTaskBatchSampler(labels, batch_size=16, seed=3)
    grouped = ProportionalTaskBatchSampler(labels, batch_size=16, seed=3, lengths=lengths, group_size=8)
    plain_batches, grouped_batches = list(plain), list(grouped)
    # Same rows drawn (regrouped, not redrawn), same number and sizes of batches.
    assert sorted(r for b in plain_batches for r in b) == sorted(r for b in grouped_batches for r in b)
    assert sorted(map(len, plain_batches)) == sorted(map(len, grouped_batches))

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches) / sum(len(b) for b in batches)

    assert padded(grouped_batches) < 0.8 * padded(plain_batches)
    # Proportions still hold over an epoch, and batches do not come out sorted by length.
    assert np.allclose(composition(grouped, labels), [0.5, 1 / 3, 1 / 6], atol=0.03)
    maxima = [lengths[b].max() for b in grouped_batches[:8]]
    assert maxima != sorted(maxima, reverse=True)


def test_length_grouping_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="lengths has 3 entries for 6 rows"):
        ProportionalTaskBatchSampler(disjoint_labels([3, 3]), batch_size=2, lengths=[1, 2, 3])


def test_shards_deal_out_the_single_process_global_batches():
    """Two processes at batch size 4 draw, together and disjointly, the batches of one process at 8."""
    from accelerate.data_loader import BatchSamplerShard

    labels = disjoint_labels([30, 12, 5])
    labels[:10, 1] = 1  # rows labeled for two tasks: a row drawn for one task must not reappear on the other shard
    whole = ProportionalTaskBatchSampler(labels, batch_size=8, seed=4)
    sharded = ProportionalTaskBatchSampler(labels, batch_size=4, seed=4, num_shards=2)
    assert len(sharded) == 2 * len(whole)
    for epoch in (0, 1):
        whole.set_epoch(epoch)
        sharded.set_epoch(epoch)
        # accelerate's shard, as the Trainer wraps the sampler: process k takes the k-th batch of every two
        ranks = [list(BatchSamplerShard(sharded, num_processes=2, process_index=k)) for k in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == len(whole)
        for first, second, batch in zip(ranks[0], ranks[1], whole):
            assert len(first) == len(second) == 4 and not set(first) & set(second)
            assert sorted(first + second) == sorted(batch)
            for task in range(3):  # each shard gets floor or ceil of half the task's quota
                quota = int((labels[batch, task] >= 0).sum())
                shares = sorted(int((labels[shard, task] >= 0).sum()) for shard in (first, second))
                assert shares in ([quota // 2, quota - quota // 2], [quota - quota // 2, quota // 2]) or task == 1


def test_shards_must_be_positive():
    with pytest.raises(ValueError, match="num_shards"):
        ProportionalTaskBatchSampler(disjoint_labels([3, 3]), batch_size=2, num_shards=0)


def test_a_short_global_batch_is_reported(caplog):
    sampler = ProportionalTaskBatchSampler(disjoint_labels([2, 1]), batch_size=2, num_shards=2)  # 3 rows for 4 slots
    with caplog.at_level("WARNING", logger="ticket_router.sampler"):
        batches = list(sampler)
    assert [len(b) for b in batches] == [2, 1] and "has 3 of its 4 rows" in caplog.text
