-- Argo CD health of a toque.dev TrainingJob, read from the status the Toque operator writes.
--
--   no status yet, or a status of an older generation  Progressing
--   Pending, Running                                    Progressing (Degraded when stuck:
--                                                       image pull, name conflict, refused Job)
--   Succeeded                                           Healthy, with the gate and the metrics
--                                                       (Progressing while the gate waits for
--                                                       the registry)
--   Suspended                                           Suspended
--   Failed                                              Degraded, with the reason
--   a spec changed after the run started                Degraded: the run never sees it
--
-- Argo CD runs custom health scripts without Lua's string and math libraries (unless
-- resource.customizations.useOpenLibs is set), so this script uses neither.

local hs = {}

local function condition(type_)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function text(value, fallback)
  if value == nil or value == "" then
    return fallback
  end
  return value
end

-- A number with at most four decimals; integer arithmetic only, so gopher-lua (Argo CD)
-- and C Lua print the same digits.
local function num(x)
  if type(x) ~= "number" then
    return tostring(x)
  end
  if x >= 1e12 or x <= -1e12 then
    return tostring(x)
  end
  local sign = ""
  if x < 0 then
    sign = "-"
    x = -x
  end
  local scaled = x * 10000 + 0.5
  scaled = scaled - scaled % 1
  if scaled == 0 then
    return "0"
  end
  local frac = scaled % 10000
  local text = sign .. tostring((scaled - frac) / 10000)
  if frac == 0 then
    return text
  end
  local places = 4
  while frac % 10 == 0 do
    frac = frac / 10
    places = places - 1
  end
  local digits = tostring(frac)
  while #digits < places do
    digits = "0" .. digits
  end
  return text .. "." .. digits
end

local function metrics()
  local m = obj.status.metrics
  if m == nil then
    return nil
  end
  local names = {}
  for name, _ in pairs(m) do
    table.insert(names, name)
  end
  if #names == 0 then
    return nil
  end
  table.sort(names)
  local shown = {}
  for i, name in ipairs(names) do
    if i > 5 then
      table.insert(shown, "+" .. tostring(#names - 5) .. " more")
      break
    end
    table.insert(shown, name .. "=" .. num(m[name]))
  end
  return "metrics: " .. table.concat(shown, ", ")
end

-- Reasons a Pending run cannot leave without a fix (as a Pod stuck on them is Degraded).
local STUCK = {
  NameConflict = true,
  JobRejected = true,
  ErrImagePull = true,
  ImagePullBackOff = true,
  InvalidImageName = true,
  CreateContainerConfigError = true,
  CreateContainerError = true,
}

-- The stuck condition the status message was made from in the last cycle (an older one may
-- linger in the list after the pod moved on).
local function stuck()
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.status == "False" and STUCK[c.reason] then
      local said = c.message or ""
      if obj.status.message == said or obj.status.message == c.reason .. ": " .. said then
        return c
      end
    end
  end
  return nil
end

local function succeeded()
  local parts = { text(obj.status.message, "training finished") }
  local gate = condition("GatePassed")
  if gate ~= nil and gate.status == "Unknown" then
    table.insert(parts, "evaluation gate waiting: " .. text(gate.message, text(gate.reason, "")))
    hs.status = "Progressing"
    hs.message = table.concat(parts, "; ")
    return hs
  end
  if gate ~= nil and gate.status == "True" then
    table.insert(parts, "gate passed (" .. text(gate.message, "") .. ")")
  elseif gate ~= nil then
    -- A model that misses the gate is an answer, not a broken resource: it is not promoted.
    table.insert(parts, "gate failed, not promoted: " .. text(gate.message, text(gate.reason, "")))
  end
  local m = metrics()
  if m ~= nil then
    table.insert(parts, m)
  end
  if obj.status.modelVersion ~= nil then
    table.insert(parts, "ModelVersion " .. obj.status.modelVersion)
  end
  hs.status = "Healthy"
  hs.message = table.concat(parts, "; ")
  return hs
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Toque operator to start the run"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the Toque operator to see generation " .. tostring(generation)
    .. " (the status is of generation " .. tostring(observed) .. ")"
  return hs
end

local phase = obj.status.phase

local applied = condition("SpecApplied")
if applied ~= nil and applied.status == "False" and applied.reason == "ImmutableAfterStart" then
  hs.status = "Degraded"
  hs.message = "the spec changed after the run started (" .. phase .. "): "
    .. text(applied.message, applied.reason)
  return hs
end

if phase == "Succeeded" then
  return succeeded()
end

if phase == "Failed" then
  local failed = condition("Failed")
  hs.status = "Degraded"
  hs.message = obj.status.message
  if (hs.message == nil or hs.message == "") and failed ~= nil then
    hs.message = failed.message
  end
  return hs
end

if phase == "Suspended" then
  local suspended = condition("Suspended")
  hs.status = "Suspended"
  hs.message = text(obj.status.message, "suspended")
  if suspended ~= nil and suspended.status == "True" and suspended.message ~= nil then
    hs.message = hs.message .. ": " .. suspended.message
  end
  return hs
end

if phase == "Pending" or phase == "Running" then
  local blocked = stuck()
  if blocked ~= nil then
    hs.status = "Degraded"
    hs.message = obj.status.message
    return hs
  end
  local parts = { text(obj.status.message, phase) }
  if phase == "Running" and obj.status.attempts ~= nil and obj.status.attempts > 1 then
    parts[1] = parts[1] .. ", attempt " .. tostring(obj.status.attempts)
  end
  local deps = condition("DependenciesReady")
  if deps ~= nil and deps.status == "False" then
    table.insert(parts, text(deps.message, text(deps.reason, "")))
  end
  hs.status = "Progressing"
  hs.message = table.concat(parts, "; ")
  return hs
end

hs.status = "Unknown"
hs.message = "unknown phase " .. tostring(phase)
return hs
