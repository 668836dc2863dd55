"""The app's dockable panels, one module per area; each ``gui_*`` function draws one window from the App."""
