"""`backbone dashboard`: a web page for the desk over the projected state (docs/dashboard.md).

`queries` reads the views and tables as the read-only role and returns plain rows of Decimals;
`formatting` renders them; `page` is the Streamlit script; `server` runs it in the foreground.
"""
