"""The CPU budget (affinity and cgroup quota, from a fake cgroup tree), the lone-request
thread policy, and the start-up calibration's decisions, on synthetic timings."""

from __future__ import annotations

import pytest

from deepseek.serving import threads as th


def _tree(tmp_path, files: dict[str, str], cgroup: str):
    root = tmp_path / "sys" / "fs" / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(cgroup)
    return root, proc


def test_cgroup_v2_quota_the_tightest_along_the_path(tmp_path):
    root, proc = _tree(tmp_path, {"cpu.max": "max 100000\n",
                                  "kubepods/cpu.max": "800000 100000\n",
                                  "kubepods/pod1/cpu.max": "250000 100000\n",
                                  "kubepods/pod1/ctr/cpu.max": "max 100000\n"},
                       "0::/kubepods/pod1/ctr\n")
    assert th.cgroup_cpu_limit(root, proc) == pytest.approx(2.5)
    assert th.cpu_budget(root, proc) == min(2, th.affinity_cpus())


def test_cgroup_v1_quota_and_none(tmp_path):
    root, proc = _tree(tmp_path, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n",
                                  "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
                                  "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                                  "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
                       "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    assert th.cgroup_cpu_limit(root, proc) == pytest.approx(1.5)
    assert th.cpu_budget(root, proc) == 1
    root, proc = _tree(tmp_path / "free", {"cpu.max": "max 100000\n"}, "0::/\n")
    assert th.cgroup_cpu_limit(root, proc) is None
    assert th.cpu_budget(root, proc) == th.affinity_cpus()
    assert th.cgroup_cpu_limit(tmp_path / "nothing", tmp_path / "none") is None


def test_more_threads_only_where_they_pay_off():
    assert th.pick_threads({1: 10.0, 2: 9.0, 4: 8.5}) == 1      # 11 %: not worth a core
    assert th.pick_threads({1: 10.0, 2: 6.0, 4: 5.5}) == 2
    assert th.pick_threads({1: 10.0, 2: 6.0, 4: 3.0}) == 4
    assert th.pick_threads({1: 3.0, 2: 6.0}) == 1               # a busy host: one thread


def test_the_policy_follows_the_host():
    p = th.ThreadPolicy(ceiling=2, load=1, lone=2, timings={1: 10.0, 2: 5.0})
    assert p.threads(3, 0) == 1 and p.threads(1, 4) == 1      # under load
    assert p.threads(1, 0) == 2                                # lone: the calibrated choice
    for _ in range(20):  # the host got busy: two threads now cost more than one did
        p.record(2, 0.012)
    assert p.lone == 1
    seen = [p.threads(1, 0) for _ in range(2 * th.EXPLORE_EVERY)]
    assert seen.count(2) == 2 and seen.count(1) == 2 * th.EXPLORE_EVERY - 2  # rare probes
    for _ in range(30):  # the host is idle again: the probes see it
        p.record(2, 0.004)
    assert p.lone == 2
    capped = th.ThreadPolicy(ceiling=1, load=4, lone=8)
    assert capped.choices == [1] and capped.load == 1 and capped.lone == 1
    assert all(capped.threads(1, 0) == 1 for _ in range(200))


class _FakeModel:
    """Run times from a cost model on a fake clock: deterministic calibrations."""

    def __init__(self, single_ms, batch_share, thread_speedup):
        self.now, self.threads = 0.0, 1
        self.single, self.share, self.speedup = single_ms / 1e3, batch_share, thread_speedup

    def run(self, n):
        t = self.single if n == 1 else self.single * n * self.share
        self.now += t / self.speedup.get(self.threads, 1.0)

    def set_threads(self, k):
        self.threads = k


@pytest.mark.parametrize("share, speedup, lone, batching", [
    (1.0, {2: 0.5}, 1, False),      # a batch costs its requests one by one; threads hurt
    (0.3, {2: 1.8}, 2, True),       # batching and a second thread both pay
    (0.85, {2: 1.1}, 1, True),      # a small gain from batching is still a gain
])
def test_calibration_decides_threads_and_batching(share, speedup, lone, batching):
    m = _FakeModel(3.0, share, speedup)
    cal = th.calibrate(m.run, m.set_threads, ceiling=2, load=1, batch=8, clock=lambda: m.now)
    assert cal.lone_threads == lone and cal.batching is batching
    assert cal.lone_ms[1] == pytest.approx(3.0)
    assert cal.batch_ms == pytest.approx(3.0 * 8 * share)
    assert ("batching " + ("on" if batching else "off")) in cal.text()


def test_a_slow_model_keeps_batching_without_timing_a_batch():
    m = _FakeModel(500.0, 1.0, {})
    cal = th.calibrate(m.run, m.set_threads, ceiling=1, load=1, batch=8, clock=lambda: m.now)
    assert cal.batch_ms is None and cal.batching
