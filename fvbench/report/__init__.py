"""Reports read only the store: tables (pandas), plots (matplotlib PNG), and a self-contained HTML page."""
