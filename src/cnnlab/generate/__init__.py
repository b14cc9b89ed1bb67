"""Generated images: sampling a GAN run, measuring it without downloads, and marking what it makes."""
