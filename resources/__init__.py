"""Files the GUI ships (icons, styles). Installed as the package ``tl_studio.resources``."""
