-- nmdose: Conquest DICOM server import hook for the dose PACS (Lua 5.1, issue 6 item 7).
--
-- Called for every received object by the ImportConverter in conquest/dicom.ini.nmdose. For dose objects
-- (every SR class -- the parser decides whether an SR is a dose report --, PET, NM and secondary captures that
-- may be dose screens) it hands the object to nmdose through the spool and returns at once: no process is
-- started per object. Everything else is ignored.
--
-- Per object: the DICOM object is written to <spool>/objects/ (Data:Write, tmp name then rename), then a small
-- entry "file=<path>\nsource=conquest\nowned=1\n" is written as a hidden tmp file and renamed into
-- <spool>/incoming/<name>.job. Rename is atomic on one filesystem, so `nmdose dose worker` never reads a
-- half-written entry; the entry stays there until its ingest is committed (lossless across crashes).
--
-- Globals Conquest provides and this script uses: Data (the received object: Data.SOPClassUID, Data.Modality,
-- Data.SOPInstanceUID, Data:Write(path)), Filename (the stored file when Conquest has written it),
-- Association (Association.Calling: the calling AE title), script (Conquest's converter commands). Settings (set
-- them in dicom.ini's lua code before the dofile, or in the environment of the Conquest service):
--   NMDOSE_SPOOL           spool folder (default /var/spool/nmdose/dose; env NMDOSE_SPOOL)
--   NMDOSE_ALLOWED_CALLING the calling AE titles whose dose objects are taken, e.g. {ORTHANC=true} (a list
--                          {'ORTHANC', 'SRC'} or a string 'ORTHANC,SRC' also work; env NMDOSE_ALLOWED_CALLING as a
--                          comma-separated list). Required: unset, every dose object is refused.
--   NMDOSE_USE_STORED_FILE true: reference Filename instead of writing a copy (only where Conquest has already
--                          stored the object when the converter runs, e.g. ExportConverter)
--
-- Calling-AE check (Conquest has no per-AE store control we can rely on; anyone on the network could C-STORE a
-- forged dose report): a dose object whose calling AE title (trailing/leading spaces trimmed, case-sensitive) is
-- not in NMDOSE_ALLOWED_CALLING is not spooled, and script('reject') makes Conquest refuse it (the C-STORE fails:
-- a research PACS missing from the list sees its forward fail instead of believing it delivered). One line starting with *** (these reach PacsTrouble.log) names
-- the calling AE title and the SOP Instance UID, never patient data. Non-dose objects are not checked here.

local SR_PREFIX = '1.2.840.10008.5.1.4.1.1.88.'
local IMAGE_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.128'] = true,    -- PET Image Storage
  ['1.2.840.10008.5.1.4.1.1.130'] = true,    -- Enhanced PET Image Storage
  ['1.2.840.10008.5.1.4.1.1.128.1'] = true,  -- Legacy Converted Enhanced PET
  ['1.2.840.10008.5.1.4.1.1.20'] = true,     -- NM Image Storage
  ['1.2.840.10008.5.1.4.1.1.7'] = true,      -- Secondary Capture (Philips "Dose Info" screens)
}
local MODALITIES = { PT = true, NM = true, SR = true }

local function value(field)
  local ok, v = pcall(function() return Data[field] end)
  if ok and v ~= nil then return tostring(v) end
  return ''
end

local function wanted(sop_class, modality)
  if string.sub(sop_class, 1, string.len(SR_PREFIX)) == SR_PREFIX then return true end
  if IMAGE_CLASSES[sop_class] then return true end
  return MODALITIES[modality] == true
end

local function safe_name(text)
  return (string.gsub(text, '[^%w%.%-]', '_'))
end

-- Conquest never seeds Lua's generator and its Lua state lives per association: seed it from the time, the clock
-- and this state's own address, so two associations of the same second draw different names.
math.randomseed(os.time() + math.floor(os.clock() * 1e6) +
                (tonumber(string.match(tostring({}), '0x(%x+)') or '0', 16) or 0) % 1000000007)

local function unique_name(sop)
  -- time + clock + a random part: names sort by arrival, never collide between Conquest threads
  return string.format('%012d-%09d-%s-%06d', os.time(), math.floor(os.clock() * 1e6) % 1e9,
                       safe_name(sop), math.random(0, 999999))
end

local function write_file(path, text)
  local fh, err = io.open(path, 'wb')
  if not fh then error('nmdose: cannot write ' .. path .. ': ' .. tostring(err)) end
  fh:write(text)
  fh:close()
end

local function file_exists(path)
  local fh = io.open(path, 'rb')
  if fh then fh:close() return true end
  return false
end

local function trim(text)
  return (string.gsub(string.gsub(text, '^%s+', ''), '%s+$', ''))
end

local function printable_line(text)
  -- an error message in one log line, bounded (paths are ours, not the sender's)
  return string.sub((string.gsub(text, '%c', ' ')), 1, 500)
end

local function printable(text)
  -- sender-controlled text in a log line: one line, bounded (Conquest's print buffer is 2000 bytes)
  return string.sub((string.gsub(text, '%c', '?')), 1, 64)
end

local function calling_ae()
  local ok, v = pcall(function() return Association.Calling end)
  if ok and v ~= nil then return trim(tostring(v)) end
  return ''
end

local function allowed_callings()
  -- the set of allowed calling AE titles, or nil when the setting is missing
  local setting = NMDOSE_ALLOWED_CALLING
  if setting == nil then setting = os.getenv('NMDOSE_ALLOWED_CALLING') end
  local set = {}
  if type(setting) == 'table' then
    for k, v in pairs(setting) do
      if type(k) == 'string' and v == true then set[trim(k)] = true end
      if type(k) == 'number' and type(v) == 'string' then set[trim(v)] = true end
    end
  elseif type(setting) == 'string' and trim(setting) ~= '' then
    for item in string.gmatch(setting, '[^,]+') do set[trim(item)] = true end
  else
    return nil
  end
  set[''] = nil
  return set
end

local function refuse(message)
  -- drop the object in Conquest (no-op where `script` is not there), then log for the operator
  pcall(function() script('reject') end)
  print('*** nmdose_import.lua: ' .. message)
end

local function check_calling()
  -- 'allowed', or the log line for a refused dose object
  local calling = calling_ae()
  local allowed = allowed_callings()
  local what = 'dose object ' .. printable(value('SOPInstanceUID')) .. ' from calling AE title \'' ..
               printable(calling) .. '\''
  if allowed == nil then
    return 'NMDOSE_ALLOWED_CALLING is not set: refused ' .. what .. ' (not spooled, not stored); ' ..
           'list the AE titles that may send dose objects in dicom.ini'
  end
  if calling == '' or not allowed[calling] then
    return 'refused ' .. what .. ' (not in NMDOSE_ALLOWED_CALLING; not spooled, not stored)'
  end
  return 'allowed'
end

local function hand_over()
  local sop_class = value('SOPClassUID')
  local modality = value('Modality')
  if not wanted(sop_class, modality) then return 'ignored' end
  local checked, verdict = pcall(check_calling)
  if not checked then verdict = 'calling AE check failed, refused a dose object: ' .. printable(tostring(verdict)) end
  if verdict ~= 'allowed' then return 'refused', verdict end
  local spool = NMDOSE_SPOOL or os.getenv('NMDOSE_SPOOL') or '/var/spool/nmdose/dose'
  local name = unique_name(value('SOPInstanceUID'))
  local file, owned
  if NMDOSE_USE_STORED_FILE and Filename and Filename ~= '' and file_exists(Filename) then
    file, owned = Filename, '0'
  else
    file, owned = spool .. '/objects/' .. name .. '.dcm', '1'
    local tmp = spool .. '/objects/.' .. name .. '.tmp'
    -- Data:Write says nothing when it cannot write: open the file first for the operating system's own reason
    -- (a missing spool, a spool Conquest may not write), instead of a later "no such file" from os.rename
    write_file(tmp, '')
    Data:Write(tmp)
    assert(os.rename(tmp, file))
  end
  local entry_tmp = spool .. '/incoming/.' .. name .. '.tmp'
  local entered, err = pcall(function()
    write_file(entry_tmp, 'file=' .. file .. '\nsource=conquest\nowned=' .. owned .. '\n')
    assert(os.rename(entry_tmp, spool .. '/incoming/' .. name .. '.job'))
  end)
  if not entered then
    -- no entry, so the worker would never see the copy: remove it rather than leave an orphan
    os.remove(entry_tmp)
    if owned == '1' then os.remove(file) end
    error(err, 0)
  end
  return 'spooled'
end

local ok, result, detail = pcall(hand_over)
if not ok then
  -- never fail the C-STORE because of nmdose: the object is in Conquest; log for the operator (only lines
  -- with *** reach Conquest's PacsTrouble.log)
  print('*** nmdose_import.lua: not spooled: ' .. printable_line(tostring(result)))
elseif result == 'refused' then
  refuse(detail)
elseif result == 'spooled' and NMDOSE_VERBOSE then
  local calling = Association and Association.Calling or '?'
  print('nmdose_import.lua: spooled ' .. value('SOPInstanceUID') .. ' from ' .. tostring(calling))
end
