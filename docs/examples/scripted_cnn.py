"""A CNN written in Python, trained by torchfit (docs/deploy.md):

    /usr/bin/python3 scripted_cnn.py            # writes net.pt
    torchfit train --model torchscript --torchscript.file net.pt --dataset fashion_mnist --epochs 5
    torchfit export --format torchscript --output trained.pt
"""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.task = "multiclass"  # torchfit reads the loss, metrics and predictions from it
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Linear(64 * 7 * 7, 10)

    def forward(self, x):
        return self.head(self.features(x))


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.jit.script(Net()).save("net.pt")
    print("wrote net.pt")
