"""Streamlit glue shared by app.py and the pages (the library `detr_viz` never imports Streamlit)."""
