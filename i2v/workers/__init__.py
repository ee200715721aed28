"""Where jobs run: workers, and the dispatch that hands each queued job to one.

A worker runs one job at a time. ``InProcessWorker`` runs it in the app's own process (a box without a GPU, the CLI,
most tests); ``ProcessWorker`` runs it in a spawned child process that owns its own ``Engine`` and resident model,
one per GPU (or ``--cpu-workers N`` on the CPU), so the web server never shares a process with CUDA and a worker that
dies takes nothing else with it. ``RayWorker`` (``--executor ray``) runs it in a Ray actor (``ray_actor.JobActor``)
on any box of a Ray cluster, with the pictures and the finished files sent through Ray (``ray_files``). ``Dispatcher`` keeps one thread per worker that takes the next queued job for it
(``choose_worker``: the resident model first, else the least recently used) and tells the ``JobManager`` how it
went. docs/SCALING.md describes the set-ups and what happens on each fault.
"""
