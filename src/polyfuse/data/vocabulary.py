"""The built-in text vocabulary's reserved token ids (the text processor's and the text
augmentations')."""

PAD_ID = 0  # padding after a text's last word
UNK_ID = 1  # a word the vocabulary does not hold
