-- nmdose: the dose-PACS stand-in's hook (Orthanc Lua, "LuaScripts"), the equivalent of
-- conquest/lua/nmdose_import.lua. NMDOSE_SPOOL is set by the settings script the stack generates before this
-- one (var/orthanc/<node>/nmdose_settings.lua).
--
-- For SR, PET, NM and secondary-capture instances: the stored file (RestApiGet /instances/{id}/file) is written
-- to <spool>/objects/ under a tmp name then renamed, and an entry "file=...\nsource=orthanc\nowned=1\n" is
-- renamed into <spool>/incoming/. No process is started; `nmdose dose worker` drains the spool.
--
-- Dose objects received over DICOM are taken only from the peers the security profile lets C-STORE into this
-- node (NMDOSE_STORE_SENDERS: AE title -> hosts, generated with the settings). Orthanc's own checks already refuse
-- unknown peers; this filter keeps a forged dose report out of dose.* even where an operator opened them.

local SR_PREFIX = '1.2.840.10008.5.1.4.1.1.88.'
local IMAGE_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.128'] = true,
  ['1.2.840.10008.5.1.4.1.1.130'] = true,
  ['1.2.840.10008.5.1.4.1.1.128.1'] = true,
  ['1.2.840.10008.5.1.4.1.1.20'] = true,
  ['1.2.840.10008.5.1.4.1.1.7'] = true,
}
local MODALITIES = { PT = true, NM = true, SR = true }

local function nmdose_wanted(tags)
  local sop_class = tags['SOPClassUID'] or ''
  if string.sub(sop_class, 1, string.len(SR_PREFIX)) == SR_PREFIX then return true end
  if IMAGE_CLASSES[sop_class] then return true end
  return MODALITIES[tags['Modality'] or ''] == true
end

local function nmdose_write(path, data)
  local fh, err = io.open(path, 'wb')
  if not fh then error('cannot write ' .. path .. ': ' .. tostring(err)) end
  fh:write(data)
  fh:close()
end

local function nmdose_sender_allowed(origin)
  if origin == nil or origin['RequestOrigin'] ~= 'DicomProtocol' then return true end
  local hosts = (NMDOSE_STORE_SENDERS or {})[origin['RemoteAet'] or '']
  return hosts ~= nil and hosts[origin['RemoteIp'] or ''] == true
end

function ReceivedInstanceFilter(dicom, origin, info)
  if nmdose_wanted(dicom) and not nmdose_sender_allowed(origin) then
    print('nmdose dose hook: refused a dose object from ' .. tostring(origin['RemoteAet']) .. '@' ..
          tostring(origin['RemoteIp']) .. ' (not a sender of the security profile)')
    return false
  end
  return true
end

function OnStoredInstance(instanceId, tags, metadata, origin)
  if not nmdose_wanted(tags) then return end
  if not nmdose_sender_allowed(origin) then return end
  local ok, err = pcall(function()
    local name = string.format('%012d-%s', os.time(), instanceId)
    local file = NMDOSE_SPOOL .. '/objects/' .. name .. '.dcm'
    local tmp = NMDOSE_SPOOL .. '/objects/.' .. name .. '.tmp'
    nmdose_write(tmp, RestApiGet('/instances/' .. instanceId .. '/file'))
    assert(os.rename(tmp, file))
    local entry = NMDOSE_SPOOL .. '/incoming/.' .. name .. '.tmp'
    nmdose_write(entry, 'file=' .. file .. '\nsource=orthanc\nowned=1\n')
    assert(os.rename(entry, NMDOSE_SPOOL .. '/incoming/' .. name .. '.job'))
  end)
  if not ok then print('nmdose dose hook: ' .. tostring(err)) end
end
