# Invitations replace adding members directly (issue 9, finding 6).

import django.db.models.deletion
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('planning', '0005_presence'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='activity',
            name='action',
            field=models.CharField(choices=[('created', 'created'), ('updated', 'updated'), ('deleted', 'deleted'), ('moved', 'moved'), ('reverted', 'reverted'), ('imported', 'imported'), ('tested', 're-tested'), ('sent', 'sent'), ('declined', 'declined')], max_length=20),
        ),
        migrations.CreateModel(
            name='Invitation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('email', models.EmailField(max_length=254)),
                ('role', models.CharField(choices=[('cmo', 'CMO'), ('cio', 'CIO'), ('bu_leader', 'BU leader'), ('facilitator', 'Facilitator'), ('observer', 'Observer')], max_length=20)),
                ('business_unit', models.CharField(blank=True, max_length=100)),
                ('token', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('sent_at', models.DateTimeField()),
                ('expires_at', models.DateTimeField()),
                ('accepted_at', models.DateTimeField(blank=True, null=True)),
                ('declined_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('accepted_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='accepted_invitations', to=settings.AUTH_USER_MODEL)),
                ('invited_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('plan', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='invitations', to='planning.plan')),
            ],
            options={
                'ordering': ['email', 'id'],
                'constraints': [models.UniqueConstraint(django.db.models.functions.text.Lower('email'), models.F('plan'), condition=models.Q(('accepted_at__isnull', True), ('declined_at__isnull', True), ('revoked_at__isnull', True)), name='one_open_invitation_per_address_and_plan'), models.CheckConstraint(condition=models.Q(('role__in', ['cmo', 'cio', 'bu_leader', 'facilitator', 'observer'])), name='invitation_role_valid'), models.CheckConstraint(condition=models.Q(models.Q(('role', 'bu_leader'), _negated=True), models.Q(('business_unit', ''), _negated=True), _connector='OR'), name='invitation_bu_leader_names_business_unit', violation_error_message='A BU leader names the business unit they speak for.')],
            },
        ),
    ]
