"""Every backend against what a user would pick instead, in one run (``make bench``).

Run: ``.venv/bin/python benchmarks/bench.py [--quick] [--json PATH] [--markdown PATH]
[--plots DIR]`` (``make bench``).

For each backend and each anchor, with 2 workers (threads, tasks) everywhere:

- the warm round trip of a no-op job, p50 and p99, one call after another;
- throughput: no-op jobs with 64 in flight;
- process pools: the time from a cold pool to 4 warm workers (the anchors: to their
  first result with 4 workers), memory per idle worker (USS), and the recovery after a
  worker is SIGKILLed (until a job succeeds again, and for our pool until it is back at
  its idle target);
- the coroutine backend: the extra memory of each running job, against a bare task.

Sides that are compared run in the same process and alternate in blocks, so that a
machine that gets busier or quieter during the run treats them alike; the figures that
matter are the ratios. Our process pool forks from the process backend's own fork
server, the process anchors from multiprocessing's forkserver; both are started before
anything is timed. trio-parallel needs a trio host: it is compared with our process pool on trio,
in a section of its own, as trio.to_thread is with our thread pool. An anchor whose
package is not installed is reported as missing.
"""

# Workers run this module again as they start (multiprocessing imports the main module in
# each): it imports nothing at its top, so that no side's workers are charged with the
# harness's own imports. The harness lives in _harness.py.
if __name__ == "__main__":
    from _harness import main

    main()
