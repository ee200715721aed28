"""Jobs on a server: the queue and its worker (``jobs.JobManager``), its time-left estimate (``eta``), the SQLite
store that survives restarts (``jobstore.JobStore``), the output-folder lock (``folder_lock``), idle auto-stop
(``idle``), pruning of old outputs (``retention``) and the ``jobs`` command line (``jobs_cli``)."""
