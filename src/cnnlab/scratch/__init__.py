"""A convolutional network in NumPy only: every layer's forward and backward written out.

Read it as micrograd for arrays: each layer keeps its `forward` and its `backward` side by
side, with the calculus in the docstring and the shapes in comments. Nothing here imports
torch; the tests check every gradient against torch autograd in float64.

    conv.py     Conv2d: a readable loop version and a fast im2col version (tested equal)
    layers.py   ReLU, MaxPool2d, Flatten, Linear
    loss.py     softmax cross-entropy
    optim.py    SGD with momentum
    net.py      Sequential, and LeNet-5 built from the layers above
    train.py    the training loop (`cnnlab scratch train`)
"""

from cnnlab.scratch.conv import Conv2d
from cnnlab.scratch.layers import Flatten, Linear, MaxPool2d, ReLU
from cnnlab.scratch.loss import softmax_cross_entropy
from cnnlab.scratch.net import Sequential, lenet5
from cnnlab.scratch.optim import SGD

__all__ = ["Conv2d", "Flatten", "Linear", "MaxPool2d", "ReLU", "SGD", "Sequential", "lenet5", "softmax_cross_entropy"]
