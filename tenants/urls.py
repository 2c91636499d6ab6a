from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from .views import api_keys, auth, home, invites, staff, staff_plans, team

urlpatterns = [
    path("", home.home, name="home"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", auth.signup, name="signup"),
    path("password/change/", auth.PasswordChangeView.as_view(), name="password_change"),
    path("password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password/reset/", auth.password_reset, name="password_reset"),
    path("password/reset/complete/", auth_views.PasswordResetCompleteView.as_view(),
         name="password_reset_complete"),
    path("password/reset/<uidb64>/<token>/",
         auth.PasswordResetConfirmView.as_view(success_url=reverse_lazy("password_reset_complete")),
         name="password_reset_confirm"),
    path("tenants/switch/", home.tenant_switch, name="tenant_switch"),
    path("invite/<str:token>/", invites.invite_accept_view, name="invite_accept"),
    path("team/", team.team, name="team"),
    path("team/invites/", team.invite_create_view, name="team_invite_create"),
    path("team/invites/<int:invite_id>/revoke/", team.invite_revoke_view, name="team_invite_revoke"),
    path("team/members/<int:membership_id>/role/", team.member_role_view, name="team_member_role"),
    path("team/members/<int:membership_id>/remove/", team.member_remove_view, name="team_member_remove"),
    path("team/audit/", team.audit_view, name="team_audit"),
    path("team/audit/<int:event_id>/", team.audit_detail_view, name="team_audit_detail"),
    path("api-keys/", api_keys.api_keys, name="api_keys"),
    path("api-keys/new/", api_keys.api_key_create_view, name="api_key_create"),
    path("api-keys/<int:api_key_id>/rename/", api_keys.api_key_rename_view, name="api_key_rename"),
    path("api-keys/<int:api_key_id>/revoke/", api_keys.api_key_revoke_view, name="api_key_revoke"),
    path("staff/", staff.staff_console_all_tenants, name="staff_console"),
    path("staff/tenants/<int:tenant_id>/plan/", staff.staff_tenant_plan, name="staff_tenant_plan"),
    path("staff/tenants/<int:tenant_id>/status/", staff.staff_tenant_status, name="staff_tenant_status"),
    path("staff/audit/", staff.staff_audit_all_tenants, name="staff_audit"),
    path("staff/plans/", staff_plans.staff_plans, name="staff_plans"),
    path("staff/plans/new/", staff_plans.staff_plan_create, name="staff_plan_create"),
    path("staff/plans/<int:plan_id>/", staff_plans.staff_plan_edit, name="staff_plan_edit"),
]
