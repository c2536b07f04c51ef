"""Running a student's kernel isolated by the operating system.

* :mod:`autograde.sandbox.bwrap` — the bubblewrap sandbox: what a kernel can see and write;
* :mod:`autograde.sandbox.container` — container mode, where bubblewrap cannot work because the grader runs in a
  container: which mode a run gets, and the grader's folders kept from kernels;
* :mod:`autograde.sandbox.user` — container mode's kernel: a user of its own, its folders, its end;
* :mod:`autograde.sandbox.supervisor` — one kernel's namespaces, limits, watchdog and end (runs in the sandbox);
* :mod:`autograde.sandbox.zygote` — the warm kernel server: ``import torch`` once, a forked kernel per submission;
* :mod:`autograde.sandbox.kernel` — the jupyter_client kernel manager nbgrader's Execute uses to start them;
* :mod:`autograde.sandbox.environment` — the environment variables a kernel gets (an allow-list);
* :mod:`autograde.sandbox.connection` — the grader's end of a kernel's connections: the message size cap;
* :mod:`autograde.sandbox.linux` — the Linux system calls Python's standard library lacks.
"""
