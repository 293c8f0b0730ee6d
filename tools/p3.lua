-- Wireshark dissector for the P3 header (docs/wire-format.md, docs/capture.md).
--
--   tshark -X lua_script:tools/p3.lua -r capture.pcapng -Y p3 -T fields -e p3.id -e p3.seq
--   wireshark -X lua_script:tools/p3.lua capture.pcapng     (or copy it to ~/.local/lib/wireshark/plugins/)
--
-- Native mode: IP protocol 50 whose first word is 0 (P3 Flags on IP); any other first word is
-- an ESP SPI and goes to Wireshark's ESP dissector. UDP mode: UDP port 4500 and the port of
-- the preference "p3.udp_port" (local.nat_port when it is not 4500); the first word decides
-- (docs/wire-format.md §Demultiplexing): bit 0x80000000 set = P3 Flags, 0 = IKE behind the
-- non-ESP marker, a single 0xff byte = NAT keepalive, anything else = an ESP SPI; all but P3
-- go to Wireshark's own UDP-encapsulation dissector (udpencap).
--
-- Header (all big endian): Flags (4) | P3 ID (4: generation in the high 12 bits, slot index
-- in the low 20, docs/key-slots.md) | Sequence (8) | ciphertext | ICV (16, the GCM tag).
-- Nothing is decrypted: the payload is shown as its length and bytes.

local p3 = Proto("p3w", "P3 (Protected Point-to-Point)")

local HEADER = 16
local TAG = 16
local UDP_BIT = 0x80000000

local f = p3.fields
f.flags = ProtoField.uint32("p3.flags", "P3 Flags", base.HEX)
f.flags_udp = ProtoField.bool("p3.flags.udp", "UDP bit", 32, nil, UDP_BIT)
f.id = ProtoField.uint32("p3.id", "P3 ID", base.HEX)
f.id_gen = ProtoField.uint32("p3.id.generation", "Generation", base.DEC, nil, 0xfff00000)
f.id_index = ProtoField.uint32("p3.id.index", "Slot index", base.DEC, nil, 0x000fffff)
f.seq = ProtoField.uint64("p3.seq", "Sequence", base.DEC)
f.enc_len = ProtoField.uint32("p3.encrypted_len", "Encrypted payload length", base.DEC)
f.enc = ProtoField.bytes("p3.encrypted", "Encrypted payload")
f.tag = ProtoField.bytes("p3.tag", "ICV (GCM tag)")
f.mode = ProtoField.string("p3.mode", "Mode")

local e_short = ProtoExpert.new("p3.short", "Shorter than a P3 header and tag", expert.group.MALFORMED, expert.severity.ERROR)
local e_flags = ProtoExpert.new("p3.flags.unknown", "Flags a receiver drops (unknown bits)", expert.group.PROTOCOL, expert.severity.WARN)
local e_seq0 = ProtoExpert.new("p3.seq.zero", "Sequence 0 is never sent", expert.group.PROTOCOL, expert.severity.WARN)
p3.experts = { e_short, e_flags, e_seq0 }

p3.prefs.udp_port = Pref.uint("UDP port", 4500, "local.nat_port of the appliances, when not 4500")

local esp = Dissector.get("esp")
local udpencap = Dissector.get("udpencap")

-- The P3 header and what follows; udp: carried in UDP (Flags must be exactly the UDP bit).
local function dissect_p3(tvb, pinfo, tree, udp)
    local len = tvb:len()
    pinfo.cols.protocol = "P3"
    local t = tree:add(p3, tvb(), "P3 (" .. (udp and "UDP" or "native") .. ")")
    t:add(f.mode, udp and "udp" or "native"):set_generated()
    if len < HEADER + TAG then
        t:add_proto_expert_info(e_short)
        pinfo.cols.info = "P3 (truncated)"
        return len
    end
    local flags = tvb(0, 4):uint()
    local ft = t:add(f.flags, tvb(0, 4))
    ft:add(f.flags_udp, tvb(0, 4))
    if flags ~= (udp and UDP_BIT or 0) then ft:add_proto_expert_info(e_flags) end
    local id = tvb(4, 4):uint()
    local it = t:add(f.id, tvb(4, 4))
    it:add(f.id_gen, tvb(4, 4))
    it:add(f.id_index, tvb(4, 4))
    local seq = tvb(8, 8):uint64()
    local st = t:add(f.seq, tvb(8, 8))
    if seq == UInt64(0) then st:add_proto_expert_info(e_seq0) end
    local enc = len - HEADER - TAG
    t:add(f.enc_len, enc):set_generated()
    if enc > 0 then t:add(f.enc, tvb(HEADER, enc)) end
    t:add(f.tag, tvb(len - TAG, TAG))
    pinfo.cols.info = string.format("P3 ID=0x%08x (gen %d, index %d), seq=%s, len=%d", id,
        bit.rshift(id, 20), bit.band(id, 0xfffff), tostring(seq), enc)
    return len
end

-- IP protocol 50: P3 when the first word is 0, else ESP.
local function dissect_ip(tvb, pinfo, tree)
    if tvb:len() >= 4 and tvb(0, 4):uint() == 0 then return dissect_p3(tvb, pinfo, tree, false) end
    return esp:call(tvb, pinfo, tree)
end

-- UDP to the NAT port: P3 when the first word has the UDP bit, else IKE / keepalive / ESP.
local function dissect_udp(tvb, pinfo, tree)
    if tvb:len() >= 4 and bit.band(tvb(0, 4):uint(), UDP_BIT) ~= 0 then
        return dissect_p3(tvb, pinfo, tree, true)
    end
    return udpencap:call(tvb, pinfo, tree)
end

local p3_ip = Proto("p3.ip", "P3 or ESP on IP protocol 50")
p3_ip.dissector = dissect_ip
local p3_udp = Proto("p3.udp", "P3, ESP or IKE on the NAT port")
p3_udp.dissector = dissect_udp
p3.dissector = dissect_ip

DissectorTable.get("ip.proto"):add(50, p3_ip)
local udp_table = DissectorTable.get("udp.port")
udp_table:add(4500, p3_udp)
local extra_port = nil

function p3.prefs_changed()
    if extra_port and extra_port ~= 4500 then udp_table:remove(extra_port, p3_udp) end
    extra_port = p3.prefs.udp_port
    if extra_port ~= 4500 then udp_table:add(extra_port, p3_udp) end
end
