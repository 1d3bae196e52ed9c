"""The IPython layer: the extension, the magics and the %%comp cell analysis."""
