-- nn: layers as small tables, run functionally so MAML can run a network with weights not its own.
--
--   local nn = require "nn"
--   local net = nn.sequential{ nn.conv2d(1, 8, 3, {padding = 1}), nn.batchnorm2d(8), nn.relu(),
--                              nn.flatten(), nn.linear(8 * 28 * 28, 5) }
--   net:init(T.generator(1))
--   local y  = net:forward(x)              -- the net's own parameters
--   local y2 = net:forward(x, fast)        -- `fast`: a flat list in net:parameters() order
--
-- Every layer has:
--   layer:parameters()        flat list of its parameter tensors (the meta-parameters in MAML)
--   layer:parameter_names()   parallel list of names ("conv1.weight", ...)
--   layer:adapted()           parallel list of booleans: true = adapted in MAML's inner loop
--   layer:buffers(), layer:buffer_names()   batch-norm running statistics (not parameters)
--   layer:forward(x [, params])             params default to layer:parameters()
--   layer:init(gen)                         re-initialise the parameters in place (see init below)
--   layer:train(flag)                       batch norm: true = batch statistics (default), false =
--                                           running statistics
--   layer:update_buffers(flag)              batch norm in training mode: whether a forward updates
--                                           the running statistics (default true)
--   layer:with_mode(training, updating, fn) fn() with train(training) and update_buffers(updating),
--                                           both put back afterwards, also when fn raises
--   layer:named(name)                       set the layer's name (prefix of its parameter names)
--   net.spec                                how to build the same network again, in a parallel worker:
--                                           {constructor =, options =} for nn.conv4/peer_net/mlp,
--                                           {module =, options =} for nn.from_module (a network of
--                                           the user's own); nn.rebuild(spec) builds it
--   nn.reproducible(net)                    nil, or why a worker could not rebuild net (no spec, or
--                                           a layer edited after construction)
-- A layer implements `apply(self, x, params, k)`: run on x with its parameters taken from
-- params[k], params[k+1], ... (that is how a sequential threads one flat list through its children).
--
-- Initialisation (layer:init): conv2d and linear weights Kaiming normal (std = sqrt(2 / fan_in), the
-- ReLU gain, fan_in = cin * k * k), biases 0; batch norm scale 1, shift 0, running mean 0, var 1.
-- A layer's `init_scheme` field chooses another weight scheme: "kaiming_normal" (default),
-- "xavier_uniform" (U(-a, a), a = sqrt(6 / (fan_in + fan_out))), "normal" (std `init_std`, default 1)
-- or "truncated_normal" (std `init_std`, redrawn beyond 2 std).
local T = require "tensor"
local options = require "options"

local M = {}

-- ------------------------------------------------------------------ initialisation schemes

local function fans(shape)
  local receptive = 1
  for d = 3, #shape do receptive = receptive * shape[d] end
  if #shape == 1 then return shape[1], shape[1] end
  return shape[2] * receptive, shape[1] * receptive -- fan_in, fan_out
end

--- Fill w in place with a sample of the named scheme (see the header comment).
function M.init_weight(w, scheme, gen, std)
  local shape = w:shape()
  local fan_in, fan_out = fans(shape)
  local value
  if scheme == "kaiming_normal" then
    value = T.randn(shape, gen) * math.sqrt(2 / fan_in)
  elseif scheme == "xavier_uniform" then
    local a = math.sqrt(6 / (fan_in + fan_out))
    value = T.rand(shape, gen) * (2 * a) - a
  elseif scheme == "normal" then
    value = T.randn(shape, gen) * (std or 1)
  elseif scheme == "truncated_normal" then
    std = std or 1
    local flat = {}
    for i = 1, w:numel() do
      local v
      repeat v = gen:normal() until math.abs(v) <= 2
      flat[i] = v * std
    end
    value = T.tensor(flat):reshape(shape)
  else
    error(string.format("nn.init_weight: unknown scheme '%s' (expected kaiming_normal, xavier_uniform, "
      .. "normal or truncated_normal)", tostring(scheme)), 2)
  end
  w:copy_(value)
  return w
end

-- ------------------------------------------------------------------ the layer base

local Layer = {}
Layer.__index = Layer
M.Layer = Layer

--- A new layer table of class `kind` with parameters {name = tensor, ...} given as a list of
--- {name, tensor, adapted} triples, and buffers as a list of {name, tensor}.
local function new_layer(kind, fields, params, buffers)
  local layer = setmetatable(fields or {}, Layer)
  layer.kind = kind
  layer.own_params, layer.own_param_names, layer.own_adapted = {}, {}, {}
  for i, p in ipairs(params or {}) do
    layer.own_params[i] = p[2]:requires_grad(true)
    layer.own_param_names[i] = p[1]
    layer.own_adapted[i] = p[3] ~= false
  end
  layer.own_buffers, layer.own_buffer_names = {}, {}
  for i, b in ipairs(buffers or {}) do
    layer.own_buffer_names[i], layer.own_buffers[i] = b[1], b[2]
  end
  layer.children = {}
  layer.is_training, layer.updates_buffers = true, true
  return layer
end
M.new_layer = new_layer

local function prefixed(prefix, name)
  if prefix == nil or prefix == "" then return name end
  return prefix .. "." .. name
end

-- walk own entries then children, collecting with f(layer, list, prefix)
local function collect(layer, own, own_names, prefix, out, names)
  for i, v in ipairs(layer[own]) do
    out[#out + 1] = v
    if names then names[#names + 1] = prefixed(prefix, layer[own_names][i]) end
  end
  for i, child in ipairs(layer.children) do
    collect(child, own, own_names, prefixed(prefix, child.name or tostring(i)), out, names)
  end
  return out, names
end

function Layer:parameters() return (collect(self, "own_params", "own_param_names", nil, {})) end
function Layer:parameter_names()
  return select(2, collect(self, "own_params", "own_param_names", nil, {}, {}))
end
function Layer:adapted() return (collect(self, "own_adapted", "own_param_names", nil, {})) end
function Layer:buffers() return (collect(self, "own_buffers", "own_buffer_names", nil, {})) end
function Layer:buffer_names()
  return select(2, collect(self, "own_buffers", "own_buffer_names", nil, {}, {}))
end

--- Number of parameter tensors (not elements).
function Layer:num_parameters() return #self:parameters() end

--- Total number of parameter elements.
function Layer:num_elements()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Layer:named(name)
  self.name = name
  return self
end

function Layer:forward(x, params)
  local n = self:num_parameters()
  if params == nil then
    params = self:parameters()
  elseif #params ~= n then
    error(string.format("%s:forward: expected %d parameter tensors (net:parameters() order), got %d",
      self.kind, n, #params), 2)
  end
  return self:apply(x, params, 1)
end

function Layer:train(flag)
  if flag == nil then flag = true end
  self.is_training = flag
  for _, child in ipairs(self.children) do child:train(flag) end
  return self
end

function Layer:update_buffers(flag)
  if flag == nil then flag = true end
  self.updates_buffers = flag
  for _, child in ipairs(self.children) do child:update_buffers(flag) end
  return self
end

--- fn() with the layer in training mode `training` and buffer updates `updating`; both are put back as
--- they were afterwards, also when fn raises (the error goes on). Returns what fn returns.
function Layer:with_mode(training, updating, fn)
  local was_training, was_updating = self.is_training, self.updates_buffers
  self:train(training)
  self:update_buffers(updating)
  local result = table.pack(pcall(fn))
  self:train(was_training)
  self:update_buffers(was_updating)
  if not result[1] then error(result[2], 0) end
  return table.unpack(result, 2, result.n)
end

function Layer:init(gen)
  gen = gen or T.default_generator()
  self:reset(gen)
  for _, child in ipairs(self.children) do child:init(gen) end
  return self
end

-- own parameters' initialisation; layers override it
function Layer:reset(gen) end -- luacheck: ignore

--- Output shape for an input shape (runs a forward on zeros; used to size linear layers).
function Layer:output_shape(input_shape)
  local y = require("autograd").no_grad(function()
    return self:with_mode(self.is_training, false, function() return self:forward(T.zeros(input_shape)) end)
  end)
  return y:shape()
end

function Layer:__tostring()
  local lines = {self.kind .. (self.desc and ("(" .. self.desc .. ")") or "")}
  for i, child in ipairs(self.children) do
    local s = tostring(child):gsub("\n", "\n  ")
    lines[#lines + 1] = "  (" .. (child.name or tostring(i)) .. ") " .. s
  end
  return table.concat(lines, "\n")
end

-- ------------------------------------------------------------------ layers

local function shape_str(shape) return "(" .. table.concat(shape, ", ") .. ")" end

-- a layer's layout option: "nchw" (default) or "nhwc" (channels-last activations)
local function check_layout(fn, layout)
  if layout == nil or layout == "nchw" or layout == "nhwc" then return layout or "nchw" end
  error(("%s: layout must be \"nchw\" or \"nhwc\", got %s"):format(fn, tostring(layout)), 3)
end

--- nn.conv2d(cin, cout, k, {stride=1, padding=0, bias=true, layout="nchw", relu=false}): weight
--- (cout, cin, k, k), bias (cout); layout="nhwc" takes and gives channels-last activations (N, H, W, C)
--- (the weight's shape is the same); relu=true: max(conv, 0) in the same op (one pass less).
function M.conv2d(cin, cout, k, opts)
  opts = options.check("nn.conv2d", 4, opts, {stride = "integer", padding = "integer", bias = "boolean",
    init = "string", init_std = "number", layout = "string", relu = "boolean"})
  local stride, padding = opts.stride or 1, opts.padding or 0
  local layout = check_layout("nn.conv2d", opts.layout)
  local params = {{"weight", T.zeros{cout, cin, k, k}}}
  if opts.bias ~= false then params[2] = {"bias", T.zeros{cout}} end
  local layer = new_layer("conv2d", {
    desc = string.format("%d -> %d, %dx%d, stride %d, padding %d%s%s", cin, cout, k, k, stride, padding,
      layout == "nhwc" and ", channels-last" or "", opts.relu and ", then ReLU" or ""),
    stride = stride, padding = padding, has_bias = opts.bias ~= false, layout = layout, relu = opts.relu == true,
    init_scheme = opts.init or "kaiming_normal", init_std = opts.init_std,
  }, params)
  local conv_opts = {stride = stride, padding = padding, layout = layout, relu = layer.relu}
  function layer:apply(x, p, i)
    return T.conv2d(x, p[i], self.has_bias and p[i + 1] or nil, conv_opts)
  end
  function layer:reset(gen)
    M.init_weight(self.own_params[1], self.init_scheme, gen, self.init_std)
    if self.has_bias then self.own_params[2]:zero_() end
  end
  return layer
end

--- nn.linear(cin, cout, {bias=true}): weight (cout, cin), bias (cout); x (N, cin) -> (N, cout).
function M.linear(cin, cout, opts)
  opts = options.check("nn.linear", 3, opts, {bias = "boolean", init = "string", init_std = "number"})
  local params = {{"weight", T.zeros{cout, cin}}}
  if opts.bias ~= false then params[2] = {"bias", T.zeros{cout}} end
  local layer = new_layer("linear", {
    desc = string.format("%d -> %d", cin, cout), has_bias = opts.bias ~= false,
    init_scheme = opts.init or "kaiming_normal", init_std = opts.init_std,
  }, params)
  function layer:apply(x, p, i)
    return T.linear(x, p[i], self.has_bias and p[i + 1] or nil)
  end
  function layer:reset(gen)
    M.init_weight(self.own_params[1], self.init_scheme, gen, self.init_std)
    if self.has_bias then self.own_params[2]:zero_() end
  end
  return layer
end

--- nn.batchnorm2d(c, {scale=true, shift=true, adapt=true, momentum=0.1, eps=1e-5, layout="nchw",
--- relu=false}) over (N, c, H, W) (also (N, c)); layout="nhwc": over channels-last (N, H, W, c);
--- relu=true: max(batch norm, 0) in the same op. scale/shift: whether the learned per-channel weight
--- (gamma) / bias (beta) exist; adapt: whether MAML's inner loop adapts them. Running mean/var are buffers of the layer.
--- Training mode normalises with the batch statistics and (when update_buffers) updates the running
--- ones; eval mode (layer:train(false)) normalises with the running statistics.
function M.batchnorm2d(c, opts)
  opts = options.check("nn.batchnorm2d", 2, opts, {scale = "boolean", shift = "boolean", adapt = "boolean",
    momentum = "number", eps = "number", layout = "string", relu = "boolean"})
  local layout = check_layout("nn.batchnorm2d", opts.layout)
  local params = {}
  local scale, shift = opts.scale ~= false, opts.shift ~= false
  if scale then params[#params + 1] = {"weight", T.ones{c}, opts.adapt} end
  if shift then params[#params + 1] = {"bias", T.zeros{c}, opts.adapt} end
  local layer = new_layer("batchnorm2d", {
    desc = string.format("%d, scale %s, shift %s, adapted %s%s", c, tostring(scale), tostring(shift),
      tostring(opts.adapt ~= false), opts.relu and ", then ReLU" or ""),
    has_scale = scale, has_shift = shift, layout = layout, relu = opts.relu == true,
    momentum = opts.momentum or 0.1, eps = opts.eps or 1e-5,
  }, params, {{"running_mean", T.zeros{c}}, {"running_var", T.ones{c}}})
  function layer:apply(x, p, i)
    local weight, bias
    if self.has_scale then weight, i = p[i], i + 1 end
    if self.has_shift then bias = p[i] end
    local track = not self.is_training or self.updates_buffers
    return T.batch_norm(x, weight, bias, {
      running_mean = track and self.own_buffers[1] or nil,
      running_var = track and self.own_buffers[2] or nil,
      training = self.is_training, momentum = self.momentum, eps = self.eps, layout = self.layout,
      relu = self.relu,
    })
  end
  function layer:reset()
    if self.has_scale then self.own_params[1]:fill_(1) end
    if self.has_shift then self.own_params[#self.own_params]:zero_() end
    self.own_buffers[1]:zero_()
    self.own_buffers[2]:fill_(1)
  end
  return layer
end

--- nn.relu()
function M.relu()
  local layer = new_layer("relu")
  function layer:apply(x) return x:relu() end
  return layer
end

--- nn.tanh() (smooth, for gradient tests and small regressors)
function M.tanh()
  local layer = new_layer("tanh")
  function layer:apply(x) return x:tanh() end
  return layer
end

--- nn.max_pool2d(k, {stride=k, padding=0})
function M.max_pool2d(k, opts)
  opts = options.check("nn.max_pool2d", 2, opts, {stride = "integer", padding = "integer"})
  local pool_opts = {stride = opts.stride or k, padding = opts.padding or 0}
  local layer = new_layer("max_pool2d", {desc = string.format("%dx%d, stride %d, padding %d",
    k, k, pool_opts.stride, pool_opts.padding)})
  function layer:apply(x) return T.max_pool2d(x, k, pool_opts) end
  return layer
end

--- nn.mean_pool({layout="nchw"}): the mean over all spatial positions, (N, C, H, W) -> (N, C), or
--- (N, H, W, C) -> (N, C) with layout="nhwc" (the paper's code: tf.reduce_mean(hidden4, [1, 2])).
function M.mean_pool(opts)
  opts = options.check("nn.mean_pool", 1, opts, {layout = "string"})
  local layer = new_layer("mean_pool", {layout = check_layout("nn.mean_pool", opts.layout)})
  local pool_opts = {layout = layer.layout}
  function layer:apply(x) return T.global_avg_pool2d(x, pool_opts) end
  return layer
end

--- nn.channels_last(): (N, C, H, W) -> (N, H, W, C), the input of layers with layout="nhwc"
--- (a view when C = 1, as Omniglot's images; else a copy).
function M.channels_last()
  local layer = new_layer("channels_last")
  function layer:apply(x)
    if x:dim() ~= 4 then
      error(("nn.channels_last: expected a 4-d input (N, C, H, W), got %s"):format(shape_str(x:shape())), 2)
    end
    local n, c, h, w = x:size(1), x:size(2), x:size(3), x:size(4)
    if c == 1 then return x:reshape({n, h, w, 1}) end
    return x:permute({1, 3, 4, 2})
  end
  return layer
end

--- nn.flatten(): (N, ...) -> (N, prod(...))
function M.flatten()
  local layer = new_layer("flatten")
  function layer:apply(x) return x:flatten(2) end
  return layer
end

--- nn.sequential{layer, layer, ...}: runs the layers in order; its parameters are its children's,
--- concatenated in order. Child i's parameter names are prefixed with its name or its index.
function M.sequential(layers)
  -- a layer given alone (nn.sequential(nn.linear(3, 4)), the braces forgotten) or a list with a hole
  -- (a nil element) would build another network than written: refused
  if getmetatable(layers) == Layer then
    error("nn.sequential: expected a list of layers, got a layer (write nn.sequential{layer, ...})", 2)
  end
  if type(layers) ~= "table" then
    error(string.format("nn.sequential: expected a list of layers, got %s", type(layers)), 2)
  end
  local last = 0
  for k in pairs(layers) do
    if math.type(k) ~= "integer" or k < 1 then
      error(string.format("nn.sequential: expected a list of layers, got the key %s", tostring(k)), 2)
    end
    last = math.max(last, k)
  end
  for i = 1, last do
    if layers[i] == nil then error(string.format("nn.sequential: element %d is nil (a layer that was not made?)", i), 2) end
  end
  local layer = new_layer("sequential")
  for i, child in ipairs(layers) do
    if getmetatable(child) ~= Layer then
      error(string.format("nn.sequential: element %d is a %s, expected an nn layer", i, type(child)), 2)
    end
    layer.children[i] = child
  end
  layer.counts = {}
  for i, child in ipairs(layer.children) do layer.counts[i] = child:num_parameters() end
  function layer:apply(x, p, k)
    for i, child in ipairs(self.children) do
      x = child:apply(x, p, k)
      k = k + self.counts[i]
    end
    return x
  end
  return layer
end

-- ------------------------------------------------------------------ networks

--- nn.conv4{ways=, channels=64, image=28, in_channels=1, pool="stride"|"max", bn_scale=false,
---          bn_shift=true, bn_adapt=false, bn_eps=1e-3, bn_momentum=0.1, order="norm_relu"|"relu_norm",
---          init="paper"|"kaiming", layout="nhwc"|"nchw"}
--- The MAML paper's few-shot network (cbfinn/maml, defaults follow its code):
---   pool="stride" (Omniglot): 4 x [conv 3x3 stride 2 padding 1 -> BN -> ReLU], 28->14->7->4->2, then
---     the mean over the remaining positions -> linear(channels -> ways). (TF's 'SAME' pads 0 before
---     and 1 after on even sizes; padding 1 on both sides gives the same sizes.)
---   pool="max" (its MiniImagenet network): 4 x [conv 3x3 stride 1 padding 1 -> BN -> ReLU ->
---     max-pool 2], then flatten -> linear.
--- bn_scale=false, bn_shift=true: TF batch_norm's defaults (beta, no gamma); bn_adapt=false: beta is
--- meta-learned but not adapted in the inner loop; bn_eps 1e-3 is TF's default.
--- order="norm_relu": conv -> BN -> ReLU as the paper (the seed tutorial and the peer use
--- "relu_norm"). init="paper": conv weights Xavier uniform, linear weights standard normal, biases 0;
--- init="kaiming": Kaiming normal conv and linear weights (nn's default).
--- layout: how the activations are kept between the layers; the input is (N, C, H, W) either way and
--- the parameters are the same. "nhwc" (the default with pool="stride"): channels-last, which the
--- convolutions' GEMMs read and write in place (nn.channels_last() first); "nchw" (the default, and
--- the only layout, with pool="max"): channels-first. The two compute the same function; their
--- float rounding differs.
function M.conv4(opts)
  opts = options.check("nn.conv4", 1, opts, {ways = "integer", channels = "integer", image = "integer",
    in_channels = "integer", pool = "string", order = "string", init = "string", bn_scale = "boolean",
    bn_shift = "boolean", bn_adapt = "boolean", bn_eps = "number", bn_momentum = "number", layout = "string"})
  local ways = opts.ways or error("nn.conv4: 'ways' (number of output logits) is required", 2)
  local channels, image, cin = opts.channels or 64, opts.image or 28, opts.in_channels or 1
  local pool = opts.pool or "stride"
  local order = opts.order or "norm_relu"
  local init = opts.init or "paper"
  if pool ~= "stride" and pool ~= "max" then
    error("nn.conv4: pool must be \"stride\" or \"max\", got " .. tostring(pool), 2)
  end
  if order ~= "norm_relu" and order ~= "relu_norm" then
    error("nn.conv4: order must be \"norm_relu\" or \"relu_norm\", got " .. tostring(order), 2)
  end
  if init ~= "paper" and init ~= "kaiming" then
    error("nn.conv4: init must be \"paper\" or \"kaiming\", got " .. tostring(init), 2)
  end
  local layout = check_layout("nn.conv4", opts.layout or (pool == "stride" and "nhwc" or "nchw"))
  if pool == "max" and layout == "nhwc" then
    error("nn.conv4: pool=\"max\" runs with layout=\"nchw\" only (max pooling has no channels-last kernels)", 2)
  end
  local conv_init = init == "paper" and "xavier_uniform" or "kaiming_normal"
  local linear_init = init == "paper" and "normal" or "kaiming_normal"
  local layers = {}
  if layout == "nhwc" then layers[1] = M.channels_last() end
  local c = cin
  for b = 1, 4 do -- (the ReLU fused into the layer before it: the batch norm or the convolution)
    local conv = M.conv2d(c, channels, 3, {stride = pool == "stride" and 2 or 1, padding = 1,
      init = conv_init, layout = layout, relu = order == "relu_norm"}):named("conv" .. b)
    local bn = M.batchnorm2d(channels, {scale = opts.bn_scale == true, shift = opts.bn_shift ~= false,
      adapt = opts.bn_adapt == true, eps = opts.bn_eps or 1e-3, momentum = opts.bn_momentum or 0.1,
      layout = layout, relu = order == "norm_relu"}):named("bn" .. b)
    layers[#layers + 1] = conv
    layers[#layers + 1] = bn
    if pool == "max" then layers[#layers + 1] = M.max_pool2d(2) end
    c = channels
  end
  local features
  if pool == "stride" then
    layers[#layers + 1] = M.mean_pool({layout = layout})
    features = channels
  else
    layers[#layers + 1] = M.flatten()
    local h = image
    for _ = 1, 4 do h = h // 2 end
    features = channels * h * h
  end
  layers[#layers + 1] = M.linear(features, ways, {init = linear_init, init_std = 1}):named("fc")
  local net = M.sequential(layers)
  net.kind = "conv4"
  return M.seal(net, {constructor = "conv4", options = opts})
end

--- nn.peer_net{ways=, layout="nhwc"}: the network of ../shared/peers/maml_torch.py (dragen1860's
---   Omniglot net): 3 x [conv 3x3 stride 2 padding 0 -> ReLU -> BN(scale, shift)], conv 2x2 stride 1
---   -> ReLU -> BN, 28 -> 13 -> 6 -> 2 -> 1, flatten, linear 64 -> ways; Kaiming normal weights, zero
---   biases, all parameters adapted in the inner loop. layout as nn.conv4's (1 x 1 maps flatten
---   alike in both).
function M.peer_net(opts)
  opts = options.check("nn.peer_net", 1, opts, {ways = "integer", in_channels = "integer", layout = "string"})
  local ways = opts.ways or error("nn.peer_net: 'ways' is required", 2)
  local layout = check_layout("nn.peer_net", opts.layout or "nhwc")
  local layers, c = {}, opts.in_channels or 1
  if layout == "nhwc" then layers[1] = M.channels_last() end
  local convs = {{3, 2}, {3, 2}, {3, 2}, {2, 1}} -- kernel, stride
  for b, kc in ipairs(convs) do -- (conv -> ReLU as one op)
    layers[#layers + 1] = M.conv2d(c, 64, kc[1], {stride = kc[2], padding = 0, layout = layout, relu = true})
      :named("conv" .. b)
    layers[#layers + 1] = M.batchnorm2d(64, {eps = 1e-5, layout = layout}):named("bn" .. b)
    c = 64
  end
  layers[#layers + 1] = M.flatten()
  layers[#layers + 1] = M.linear(64, ways):named("fc")
  local net = M.sequential(layers)
  net.kind = "peer_net"
  return M.seal(net, {constructor = "peer_net", options = opts})
end

--- nn.mlp{sizes={1, 40, 40, 1}, init="paper"|"kaiming"}: linear layers with ReLU between them (the
--- paper's sinusoid regressor). init="paper": truncated normal std 0.01 weights, zero biases (the
--- paper's code); "kaiming": Kaiming normal.
function M.mlp(opts)
  opts = options.check("nn.mlp", 1, opts, {sizes = "table", init = "string"})
  local sizes = opts.sizes or {1, 40, 40, 1}
  local init = opts.init or "paper"
  if init ~= "paper" and init ~= "kaiming" then
    error("nn.mlp: init must be \"paper\" or \"kaiming\", got " .. tostring(init), 2)
  end
  local layers = {}
  for i = 1, #sizes - 1 do
    layers[#layers + 1] = M.linear(sizes[i], sizes[i + 1], {
      init = init == "paper" and "truncated_normal" or "kaiming_normal", init_std = 0.01,
    }):named("fc" .. i)
    if i < #sizes - 1 then layers[#layers + 1] = M.relu() end
  end
  local net = M.sequential(layers)
  net.kind = "mlp"
  net.desc = table.concat(sizes, " -> ")
  return M.seal(net, {constructor = "mlp", options = opts})
end

-- ------------------------------------------------------------------ networks by name

-- layer fields that change while a network is used (not part of what it is)
local state_fields = {is_training = true, updates_buffers = true, fingerprint = true, spec = true, children = true}

-- a text of a layer tree: every field (functions by identity, tensors by shape), children in order
local function layer_text(layer, path, out)
  local keys = {}
  for k in pairs(layer) do
    if not state_fields[k] then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = layer[k]
    local text
    if type(v) == "function" then text = tostring(v)
    elseif T.is_tensor(v) then text = "tensor"
    elseif type(v) == "table" then
      local parts = {}
      for kk, vv in pairs(v) do
        parts[#parts + 1] = tostring(kk) .. "=" .. (T.is_tensor(vv) and "tensor(" .. table.concat(vv:shape(), ",")
          .. ")" or tostring(vv))
      end
      table.sort(parts)
      text = "{" .. table.concat(parts, ",") .. "}"
    else text = tostring(v) end
    out[#out + 1] = {path, tostring(k), text}
  end
  out[#out + 1] = {path, "<metatable>", tostring(getmetatable(layer))}
  for i, child in ipairs(layer.children or {}) do
    layer_text(child, prefixed(path, child.name or tostring(i)), out)
  end
  out[#out + 1] = {path, "<children>", tostring(#(layer.children or {}))}
  return out
end

--- Record how net was built (spec: {constructor =, options =} or {module =, options =}) and what
--- it is now, so that nn.reproducible can tell whether a worker's rebuilt copy is the same network.
function M.seal(net, spec)
  net.spec = spec
  net.fingerprint = layer_text(net, "", {})
  return net
end

--- nil when nn.rebuild(net.spec) builds exactly this network; else what differs and what to do.
function M.reproducible(net)
  local fix = "; build the network in a module (a file beside the script returning function(options) -> "
    .. "network, see docs/algorithms.md) with nn.from_module(name, options), or run with threads=1"
  if type(net) ~= "table" or not net.spec then
    return "the network has no spec (it was not built by nn.conv4, nn.peer_net, nn.mlp or nn.from_module), "
      .. "so worker threads cannot rebuild it" .. fix
  end
  if net.spec.module and not require("locate").module_file(net.spec.module) then
    return string.format("the network module '%s' is in no file on package.path (the script made it, in "
      .. "package.loaded or package.preload), so worker threads, which load modules from files, cannot build it; "
      .. "put it in %s.lua beside the script, or run with threads=1", net.spec.module, net.spec.module)
  end
  local now, was = layer_text(net, "", {}), net.fingerprint or {}
  for i = 1, math.max(#now, #was) do
    local a, b = now[i], was[i]
    if not a or not b or a[1] ~= b[1] or a[2] ~= b[2] or a[3] ~= b[3] then
      local where = a or b
      return string.format("the network's layer '%s' (field %s) was changed after the network was built; "
        .. "worker threads rebuild it from its spec and would not see that%s",
        where[1] == "" and "<top>" or where[1], where[2], fix)
    end
  end
  return nil
end

--- nn.from_module(name, options): the network that the module `name` (a file name.lua on
--- package.path, e.g. beside the experiment script) builds from options. The module returns a
--- function(options) -> network, or a table with build(options). Worker threads rebuild it by name.
function M.from_module(name, options)
  if type(name) ~= "string" then error("nn.from_module: expected a module name, got " .. type(name), 2) end
  local mod = require(name)
  local build = type(mod) == "function" and mod or (type(mod) == "table" and mod.build)
  if type(build) ~= "function" then
    error(string.format("nn.from_module: module '%s' must return function(options) -> network or a table "
      .. "with build(options)", name), 2)
  end
  local net = build(options or {})
  if getmetatable(net) ~= Layer then
    error(string.format("nn.from_module: module '%s' built a %s, not an nn layer", name, type(net)), 2)
  end
  return M.seal(net, {module = name, options = options or {}})
end

--- The network of a spec (net.spec of a network built by a constructor or nn.from_module).
function M.rebuild(spec)
  if type(spec) ~= "table" then error("nn.rebuild: expected a network spec, got " .. type(spec), 2) end
  if spec.module then return M.from_module(spec.module, spec.options) end
  local constructor = M[spec.constructor]
  if type(constructor) ~= "function" then
    error("nn.rebuild: unknown constructor " .. tostring(spec.constructor), 2)
  end
  return constructor(spec.options)
end

-- ------------------------------------------------------------------ state helpers

--- Copy the tensors of `src` (a list) into the net's parameters (or `dst` list) in place, checking
--- shapes; errors name the parameter.
function M.copy_into(dst, src, names)
  if #dst ~= #src then
    error(string.format("nn.copy_into: %d tensors given for %d", #src, #dst), 2)
  end
  for i = 1, #dst do
    local a, b = dst[i]:shape(), src[i]:shape()
    if shape_str(a) ~= shape_str(b) then
      error(string.format("nn.copy_into: %s is %s, the source %s", names and names[i] or ("#" .. i),
        shape_str(a), shape_str(b)), 2)
    end
    dst[i]:copy_(src[i])
  end
end

M.shape_str = shape_str

return M
