-- MAML sinusoid regression (Finn et al. 2017, section 5.1), no dataset needed.
-- Tasks: y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5].
-- Model: MLP 1 -> 40 -> 40 -> 1 with ReLU; loss MSE.
-- Evaluation at K = 5 support points after 0..10 steps (compare: the paper's figure; the issue's
-- reference MSE 0.67 / 0.38 / 0.35 after 1 / 5 / 10 steps).
return require("experiment").run{
  name             = "sinusoid",
  task             = "sinusoid",
  model            = "mlp",
  hidden           = {40, 40},
  init             = "paper",     -- truncated normal std 0.01, zero biases (the paper's code)
  shots            = 10,          -- K support points per task in meta-training
  queries          = 10,          -- query points per task in meta-training
  meta_batch       = 25,
  steps            = 1,           -- inner steps in meta-training
  inner_lr         = 0.01,
  inner_loss_scale = 1,           -- plain mean squared error
  meta_lr          = 1e-3,        -- Adam
  iterations       = 70000,
  shots_test       = 5,           -- K at meta-test
  queries_test     = 100,
  steps_test       = 10,
  steps_test_max   = 10,
  eval_every       = 2000,
  val_tasks        = 100,
  test_tasks       = 600,
  checkpoint_every = 5000,
}
