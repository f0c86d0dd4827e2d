"""`diffsvc ui`: the whole workflow in a local web page (Gradio), on top of the command's own steps.

Long steps (preprocess, train, conversions) run as background `diffsvc` processes (jobs.py), so a
closed tab loses nothing; the page (app.py) starts them, follows their logs and shows results.
"""
