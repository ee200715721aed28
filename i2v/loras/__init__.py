"""LoRAs on the resident pipeline: what a request asks for (``choice.py``), finding the file (``files.py``: a path,
the app's LoRA folder or a hub file; pickle files refused), checking its keys against the model before a run
(``match.py``) and keeping its adapters loaded between jobs (``adapters.py``, through diffusers' LoRA loading); the
bench's random-weight LoRA for a loaded transformer (``synthetic.py``)."""
