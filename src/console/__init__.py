"""The operator's Textual views. They show state; they decide nothing."""
