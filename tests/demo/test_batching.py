"""MicroBatcher: concurrent submissions share calls, keys never mix, errors stay with their group."""
import threading
import time

import pytest

from snapsight.demo.batching import MicroBatcher


def _run_concurrently(batcher, items, key_of=lambda i: "k"):
    results, errors = {}, {}
    start = threading.Barrier(len(items))

    def worker(i):
        start.wait()
        try:
            results[i] = batcher.submit(key_of(i), i, timeout=10)
        except Exception as e:  # noqa: BLE001
            errors[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_requests_are_merged_and_answered_in_order():
    calls = []

    def run(key, items):
        calls.append(list(items))
        time.sleep(0.02)  # while this "forward pass" runs, the other requests queue up
        return [x * 10 for x in items]

    b = MicroBatcher(run, max_batch_size=8, max_wait_s=0.02)
    results, errors = _run_concurrently(b, list(range(16)))
    assert not errors
    assert results == {i: i * 10 for i in range(16)}
    assert len(calls) < 16 and max(len(c) for c in calls) > 1
    assert all(len(c) <= 8 for c in calls)
    assert b.stats.items == 16 and b.stats.batches == len(calls)


def test_items_with_different_keys_never_share_a_call():
    seen = []

    def run(key, items):
        seen.append((key, list(items)))
        return [(key, x) for x in items]

    b = MicroBatcher(run, max_batch_size=16, max_wait_s=0.02)
    results, errors = _run_concurrently(b, list(range(12)), key_of=lambda i: i % 3)
    assert not errors
    assert all(results[i] == (i % 3, i) for i in range(12))
    assert all(all(x % 3 == key for x in items) for key, items in seen)


def test_an_error_fails_only_its_own_group():
    def run(key, items):
        if key == "bad":
            raise ValueError("broken model")
        return items

    b = MicroBatcher(run, max_batch_size=16, max_wait_s=0.02)
    results, errors = _run_concurrently(b, list(range(8)), key_of=lambda i: "bad" if i < 3 else "good")
    assert set(errors) == {0, 1, 2} and all(isinstance(e, ValueError) for e in errors.values())
    assert results == {i: i for i in range(3, 8)}
    assert b.submit("good", 42) == 42  # the worker survived


def test_wrong_result_count_is_reported():
    b = MicroBatcher(lambda key, items: [], max_batch_size=4)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        b.submit("k", 1, timeout=5)
