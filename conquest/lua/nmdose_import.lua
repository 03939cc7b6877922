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
-- Association (Association.Calling, for the log line). Settings (set them in dicom.ini's lua code before the
-- dofile, or in the environment of the Conquest service):
--   NMDOSE_SPOOL           spool folder (default /var/spool/nmdose/dose; env NMDOSE_SPOOL)
--   NMDOSE_USE_STORED_FILE true: reference Filename instead of writing a copy (only where Conquest has already
--                          stored the object when the converter runs, e.g. ExportConverter)

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

local function hand_over()
  local sop_class = value('SOPClassUID')
  local modality = value('Modality')
  if not wanted(sop_class, modality) then return 'ignored' end
  local spool = NMDOSE_SPOOL or os.getenv('NMDOSE_SPOOL') or '/var/spool/nmdose/dose'
  local name = unique_name(value('SOPInstanceUID'))
  local file, owned
  if NMDOSE_USE_STORED_FILE and Filename and Filename ~= '' and file_exists(Filename) then
    file, owned = Filename, '0'
  else
    file, owned = spool .. '/objects/' .. name .. '.dcm', '1'
    local tmp = spool .. '/objects/.' .. name .. '.tmp'
    Data:Write(tmp)
    assert(os.rename(tmp, file))
  end
  local entry_tmp = spool .. '/incoming/.' .. name .. '.tmp'
  write_file(entry_tmp, 'file=' .. file .. '\nsource=conquest\nowned=' .. owned .. '\n')
  assert(os.rename(entry_tmp, spool .. '/incoming/' .. name .. '.job'))
  return 'spooled'
end

local ok, result = pcall(hand_over)
if not ok then
  -- never fail the C-STORE because of nmdose: the object is in Conquest; log for the operator
  print('nmdose_import.lua: ' .. tostring(result))
elseif result == 'spooled' and NMDOSE_VERBOSE then
  local calling = Association and Association.Calling or '?'
  print('nmdose_import.lua: spooled ' .. value('SOPInstanceUID') .. ' from ' .. tostring(calling))
end
