"""The web layer, thin over the engine: the app and its routes (``server.create_app``), the JSON job API
(``job_api``), the Gradio page (``ui``, ``forms``, ``render``, ``model_choice``, the panel under Generate
``progress_panel``, the ``queue_panel``, the ``workers_panel``), authentication (``auth``), the file guard
(``file_guard``), the Prometheus metrics (``metrics``). Importing it imports Gradio: entry points only."""
