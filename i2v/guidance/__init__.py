"""What the app tells the user before a run, and what it does to the picture: loading and fitting the picture
(``images``), its quality warnings (``image_quality``), the prompt linter (``prompt_lint``) with its keyword library
(``keywords``, data in presets/motion_keywords.toml) and the parameter traps (``traps``)."""
