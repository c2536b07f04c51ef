"""How many CPU cores this process may really use. Free of torch, so the grader can import it and stay quick."""
import math
import os


def available_cores():
    """The CPU affinity, capped by a cgroup CPU quota (Binder, Docker, a grading server's container)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def cgroup_cpu_quota(root="/sys/fs/cgroup"):
    """Whole cores allowed by the cgroup (v2, then v1), rounded up; None when there is no quota."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            limit, period = f.read().split()[:2]
        if limit != "max":
            return math.ceil(int(limit) / int(period))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as q, \
                open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as p:
            limit, period = int(q.read()), int(p.read())
        if limit > 0:
            return math.ceil(limit / period)
    except (OSError, ValueError):
        pass
    return None
