"""Numbers that summarise a model or a training run."""
import torch


def final_loss(losses, last=10):
    """The mean training loss of the last `last` steps: less noisy than the very last step alone."""
    tail = list(losses)[-last:]
    if not tail:
        raise ValueError("no losses to summarise")
    return sum(tail) / len(tail)


@torch.no_grad()
def accuracy(model, images, labels, batch_size=1000):
    """The fraction of `images` that `model` (in eval mode) labels correctly, in batches to bound memory."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        correct += (model(batch).argmax(1) == labels[start:start + batch_size].to(device)).sum().item()
    model.train(was_training)
    return correct / len(images)
