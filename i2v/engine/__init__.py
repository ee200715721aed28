"""The engine: one typed request in (``request.GenerationRequest``), one result out (``run.GenerationResult``).

``engine.Engine`` is the service: ``prepare`` (``resolve``: validate, presets, the model's rules, the picture,
guidance, the memory plan; nothing loaded), ``generate`` (device lock, then ``run.JobRun``: load, denoise, decode,
NaN/Inf and out-of-memory retries, files). Beside them: progress and cancel (``progress``), the NaN checks
(``numerics``), the out-of-memory helpers (``device_memory``), records and mp4 writing (``record``, ``video``), the
preset tiers (``presets``), learned step times for estimates (``step_times``) and the free-disk check (``disk``).
"""
