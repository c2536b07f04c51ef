"""Wrong training loops."""
from . import case
from .templates import TRAIN_SETUP, TRAIN_STEP, train

VISIBLE = "test_train_visible"
LOSSES = "test_train_losses"
MODE = "test_train_mode_and_gradients"
SEED = "test_train_seed_data_devices"


def setup(old, new):
    assert old in TRAIN_SETUP, old
    return train(setup=TRAIN_SETUP.replace(old, new))


def step(old, new):
    assert old in TRAIN_STEP, old
    return train(step=TRAIN_STEP.replace(old, new))


CASES = [
    case("tr_no_train_mode", "never calls model.train(): BatchNorm uses its running statistics (passes the visible "
         "tests)", loses={MODE}, train=setup("model.train()\n", "")),
    case("tr_no_zero_grad", "never clears the gradients, so they pile up (passes the visible tests)", loses={MODE},
         train=step("optimizer.zero_grad()\n", "")),
    case("tr_zero_grad_before_step", "clears the gradients between backward and the step: nothing is learned",
         loses={VISIBLE, LOSSES}, train=step("optimizer.zero_grad()\nloss.backward()\n",
                                             "loss.backward()\noptimizer.zero_grad()\n")),
    case("tr_returns_tensors", "records the loss tensors, not loss.item()", loses={VISIBLE, LOSSES, SEED},
         train=step("losses.append(loss.item())", "losses.append(loss)")),
    case("tr_sum_of_losses", "records the sum over the batch, not the mean (passes the visible tests)",
         loses={LOSSES}, train=step("loss = F.cross_entropy(model(images[batch].to(device)), labels[batch].to(device))",
                                    "loss = F.cross_entropy(model(images[batch].to(device)), labels[batch].to(device), "
                                    "reduction='sum')")),
    case("tr_unseeded_batches", "draws the batches from an unseeded generator (passes the visible tests)",
         loses={SEED}, train=setup("generator = torch.Generator().manual_seed(seed)",
                                   "generator = torch.Generator()\ngenerator.seed()")),
    case("tr_ignores_seed", "always seeds with 0 (passes the visible tests)", loses={SEED},
         train=setup("manual_seed(seed)", "manual_seed(0)")),
    case("tr_full_batch", "trains on all the images at every step (passes the visible tests)", loses={LOSSES, SEED},
         train=step("batch = order[cursor:cursor + batch_size]", "batch = order")),
    case("tr_same_batch", "the first batch_size images at every step (passes the visible tests)",
         loses={LOSSES, SEED},
         train=step("batch = order[cursor:cursor + batch_size]", "batch = torch.arange(min(batch_size, len(images)))")),
    case("tr_ignores_lr", "Adam's default learning rate whatever lr says", loses={VISIBLE, LOSSES},
         train=setup("torch.optim.Adam(model.parameters(), lr=lr)", "torch.optim.Adam(model.parameters())")),
    case("tr_batch_not_moved", "feeds the batch without moving it to the model's device (passes on a CPU)",
         loses={SEED}, train=step("model(images[batch].to(device))", "model(images[batch])")),
    case("tr_labels_not_moved", "leaves the labels on the CPU (passes on a CPU)", loses={SEED},
         train=step("labels[batch].to(device)", "labels[batch]")),
    case("tr_moves_model_to_cpu", "moves the model to the CPU (passes on a CPU)", loses={SEED},
         train=setup("device = next(model.parameters()).device", "device = torch.device('cpu')\nmodel.to(device)")),
    case("tr_checks_then_fixed_device", "checks the loss for NaN (fine on any device), but sends the batch to the "
         "CPU (passes on a CPU)", loses={SEED},
         train=step("model(images[batch].to(device))", "model(images[batch].to('cpu'))").replace(
             "        losses.append(loss.item())",
             "        if torch.isnan(loss):\n            raise FloatingPointError('the loss is NaN')\n"
             "        losses.append(loss.item())")),
    case("tr_normalises_in_place", "standardises the caller's images in place first (passes the visible tests)",
         loses={SEED}, train=setup("model.train()\n", "model.train()\nimages -= images.mean()\n")),
    case("tr_loss_after_the_step", "records the loss of a second forward pass, after the step (passes the visible "
         "tests)", loses={LOSSES}, train=step(
             "losses.append(loss.item())",
             "losses.append(F.cross_entropy(model(images[batch].to(device)), labels[batch].to(device)).item())")),
    case("tr_returns_last_loss", "returns only the last loss", loses={VISIBLE, LOSSES, SEED},
         train=train().replace("    return losses\n", "    return losses[-1]\n")),
    case("tr_wraps_course_package", "calls the course's own resnet_course.train (passes the visible tests)",
         loses={LOSSES, MODE, SEED}, train="""
        from resnet_course import train as course_train


        def train(model, images, labels, steps, lr=2e-3, batch_size=128, seed=0):
            return course_train(model, images, labels, steps, lr=lr, batch_size=batch_size, seed=seed, progress=False)
        """),
]
