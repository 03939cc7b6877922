-- Numbers a physicist still did by hand (issue 16 item 5): the size-specific dose estimate of each CT event and
-- the patient size behind it, the net administered activity from the pre- and post-administration measurements,
-- which rule gave the activity and the injection date, and the activity's plausibility for its agent.
-- Every column is nullable (NULL: not in the objects, or not computable); the runtime roles' grants are on the
-- tables, so the added columns are covered (nmdose.db.roles.grant_runtime).

-- TID 10013 CT Dose (AAPM Reports 204 and 220); sizes in mm whatever unit the report used
ALTER TABLE dose.ct_event
    ADD COLUMN ssde_mgy                              double precision, -- Size Specific Dose Estimation (113930)
    ADD COLUMN ssde_method                           text,             -- CID 10023 meaning
    ADD COLUMN ssde_method_code                      text,
    ADD COLUMN ssde_size_mm                          double precision, -- the size the estimate used
    ADD COLUMN ssde_size_kind                        text,             -- water_equivalent_diameter | effective_diameter
                                                                       -- | lateral_dimension | ap_dimension | lateral_plus_ap
    ADD COLUMN water_equivalent_diameter_mm          double precision, -- 113980
    ADD COLUMN water_equivalent_diameter_method      text,             -- CID 10024 meaning
    ADD COLUMN water_equivalent_diameter_method_code text,
    ADD COLUMN effective_diameter_mm                 double precision, -- Derived Effective Diameter (113933)
    ADD COLUMN lateral_dimension_mm                  double precision, -- Measured Lateral Dimension (113931)
    ADD COLUMN ap_dimension_mm                       double precision; -- Measured AP Dimension (113932)

-- TID 10022 pre/post-administration measurements and the rules applied (docs/dose.md, "Net administered activity")
ALTER TABLE dose.radiopharmaceutical
    ADD COLUMN pre_measured_datetime        timestamp,        -- when the pre-administration activity was measured
    ADD COLUMN post_measured_datetime       timestamp,        -- when the residual was measured
    ADD COLUMN net_activity_mbq             double precision, -- pre minus post, both decay-corrected to the injection
    ADD COLUMN administered_activity_rule   text,             -- which activity the derived values use:
                                                              -- rrdsr_administered | rrdsr_net_pre_post |
                                                              -- pet_header_start_datetime | pet_header_start_time |
                                                              -- nm_header_start_datetime | nm_header_start_time | ...
    ADD COLUMN start_datetime_source        text,             -- how the injection date-time was found
    ADD COLUMN plausibility                 text;             -- warning when the activity is implausible for its agent
